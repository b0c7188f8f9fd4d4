"""The shipped stack in containers: the model service (llama.cpp on the offline SmolLM2 GGUF)
and the Caddy gateway, from the images built by the daemon's build path (``shipped_images``),
on llm-network, reached by unit name. The runbook's ``curl /api/generate`` (Polish prompt)
answers through the gateway container; ``docker kill`` → replaced and healthy; daemon SIGKILL →
re-adopted, not restarted."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.runtimes.docker import labels
from tests.model_fixtures import free_port
from tests.runtimes.docker.docker_fixtures import REPO_ROOT, Daemon

pytestmark = [pytest.mark.slow, pytest.mark.docker]

POLISH = {"prompt": "Napisz krótki wiersz o jesieni.", "max_length": 32, "temperature": 0.7}
IMAGE_UID = 10001


def shipped_unit(name: str, image: str) -> str:
    """The shipped unit file with its Build= replaced by the image built for this session."""
    text = (REPO_ROOT / "units" / name).read_text()
    text = re.sub(r"^Dockerfile=.*\n", "", text, flags=re.M)
    return re.sub(r"^Build=.*$", f"Image={image}", text, flags=re.M)


def model_copy(source: Path, dest: Path) -> Path:
    """A writable copy for the container's user (the server may write next to the weights)."""
    shutil.copytree(source, dest)
    for root, dirs, files in os.walk(dest):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), IMAGE_UID, IMAGE_UID)
    os.chown(dest, IMAGE_UID, IMAGE_UID)
    return dest


@pytest.fixture
def stack(daemon: Daemon, shipped_images: dict[str, str], smollm2_gguf_dir: Path,
          tmp_path: Path) -> tuple[Daemon, int]:
    if os.geteuid() != 0:
        pytest.skip("the model copy is handed to the image's uid 10001 with chown (root only)")
    gateway_port = free_port()
    daemon.write_unit("stack.target", (REPO_ROOT / "units" / "stack.target").read_text())
    daemon.write_unit("model-service.service",
                      shipped_unit("model-service.service", shipped_images["model-service"]))
    daemon.write_unit("gateway.service", shipped_unit("gateway.service", shipped_images["gateway"]))
    daemon.env_extra.update({
        "MODEL_PATH": str(model_copy(smollm2_gguf_dir, tmp_path / "model")),
        "MODEL_SERVICE_PORT": str(free_port()), "GATEWAY_PORT": str(gateway_port),
        "BIND_ADDRESS": "127.0.0.1", "GATEWAY_PROGRAM": "caddy", "ENGINE": "llama.cpp",
        "USE_INT8": "false", "NOVNC_PORT": str(free_port()),
    })
    daemon.images = shipped_images  # type: ignore[attr-defined]
    daemon.start("stack.target")
    daemon.wait_healthy("model-service", timeout=240)
    daemon.wait_healthy("gateway", timeout=60)
    return daemon, gateway_port


def generate_through_gateway(port: int, timeout: float = 120,
                             daemon: Daemon | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/api/generate", json=POLISH,
                                  timeout=60)
            if response.status_code == 200:
                return dict(response.json())
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    logs = ""
    if daemon is not None:
        with contextlib.suppress(Exception):
            logs = "\n".join(f"--- {unit}:\n{daemon.unit_log(unit, 30)}"
                              for unit in ("gateway", "model-service"))
    raise AssertionError(f"/api/generate through the gateway did not answer: {last}\n{logs}")


def test_stack_in_containers_answers_through_the_gateway(stack: tuple[Daemon, int]) -> None:
    daemon, port = stack
    body = generate_through_gateway(port, daemon=daemon)
    assert isinstance(body.get("generated_text", body.get("text")), str) and body, body
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert page.status_code == 200 and "<title>LLM test page</title>" in page.text, \
        "the test page is package data of the model-service image"

    model = daemon.container_of("model-service.service")
    gateway = daemon.container_of("gateway.service")
    for container, alias in ((model, "model-service"), (gateway, "gateway")):
        network = container.attrs["NetworkSettings"]["Networks"][f"llm-network-{daemon.owner}"]
        assert alias in (network.get("Aliases") or []), f"{alias} reachable by its unit name"
        assert container.attrs["Config"]["User"] not in ("", "root", "0")
    # Only the gateway publishes on the host's HTTP port; the model service on loopback only.
    assert gateway.attrs["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostPort"] == str(port)
    assert all(b["HostIp"] == "127.0.0.1"
               for b in model.attrs["HostConfig"]["PortBindings"].values() for b in b)
    config = (daemon.state_dir / "gateway" / "docker" / "caddy.json").read_text()
    assert "model-service:" in config and "127.0.0.1" not in config.split('"routes"')[1]


def test_killed_container_is_replaced_and_daemon_kill_readopts(stack: tuple[Daemon, int]) -> None:
    daemon, port = stack
    first = daemon.container_of("gateway.service")
    first.kill()
    daemon.wait_for("gateway", lambda s: s["restarts"] >= 1 and s["state"] == "running"
                    and s["health"] == "healthy", 60, "gateway replaced and healthy")
    second = daemon.container_of("gateway.service")
    assert second.id != first.id
    generate_through_gateway(port, daemon=daemon)
    model = daemon.container_of("model-service.service")
    model.kill()
    daemon.wait_for("model-service", lambda s: s["restarts"] >= 1 and s["state"] == "running"
                    and s["health"] == "healthy", 120, "model-service replaced and healthy")
    assert daemon.container_of("model-service.service").id != model.id
    generate_through_gateway(port, daemon=daemon)

    ids = {unit: daemon.container_of(unit).id for unit in ("gateway.service",
                                                             "model-service.service")}
    daemon.kill9()
    daemon.start("stack.target")
    daemon.wait_healthy("model-service", timeout=60)
    daemon.wait_healthy("gateway", timeout=60)
    assert {unit: daemon.container_of(unit).id for unit in ids} == ids, "re-adopted, not restarted"
    assert "re-adopted" in daemon.unit_log("model-service", 400)
    generate_through_gateway(port, daemon=daemon)

    daemon.ctl.post("/shutdown", params={"purge": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and daemon.containers():
        time.sleep(0.5)
    assert daemon.containers() == [], "purge removes our containers"
    assert daemon.docker.images.get(labels.IMAGE_PREFIX + "bookworm:base"), "the base stays"


def test_reset_rebuilds_the_gateway_image(daemon: Daemon, shipped_images: dict[str, str]) -> None:
    """The shipped gateway unit as it is (Build=. with Dockerfile=packaging/docker/gateway/...):
    the daemon builds it (base image from `images build`), `reset` removes our image and the next
    start builds it again; what is not ours (the base, the session's images) stays."""
    text = (REPO_ROOT / "units" / "gateway.service").read_text()
    assert "\nBuild=.\n" in text
    daemon.write_unit("gateway.service", text.replace("\nBuild=.\n", f"\nBuild={REPO_ROOT}\n"))
    daemon.write_unit("stack.target", (REPO_ROOT / "units" / "stack.target").read_text())
    daemon.env_extra.update({"GATEWAY_PORT": str(free_port()), "BIND_ADDRESS": "127.0.0.1",
                             "GATEWAY_PROGRAM": "caddy"})
    daemon.start("stack.target")
    daemon.wait_healthy("gateway", timeout=180)
    first = daemon.container_of("gateway.service").image
    assert labels.owned_by(first.labels, daemon.owner)
    result = daemon.ctl.post("/reset")
    assert any("image" in item for item in result["removed"]), result
    daemon.wait_for("gateway", lambda s: s["state"] == "running" and s["health"] == "healthy"
                    and s["restarts"] == 0, 240, "rebuilt and healthy after reset")
    second = daemon.container_of("gateway.service").image
    assert second.id != first.id, "reset removed the image; the start built a new one"
    assert "Successfully built" in daemon.unit_log("gateway", 2000)
    for tag in [labels.IMAGE_PREFIX + "bookworm:base", *shipped_images.values()]:
        assert daemon.docker.images.get(tag)


def daemon_images(daemon: Daemon) -> dict[str, str]:
    return dict(daemon.images)  # type: ignore[attr-defined]


def shipped_desktop_unit(name: str, image: str, suffix: str) -> str:
    """A shipped desktop container unit with this session's image and volumes of its own (the
    shipped names are shared by every daemon on the engine)."""
    text = shipped_unit(name, image)
    return (text.replace("llm-supervisord-x11:", f"lsd-x11-{suffix}:")
            .replace("llm-supervisord-desktop:", f"lsd-desktop-{suffix}:"))


PROCESS_DESKTOP = ("xvfb", "x11vnc", "novnc", "browser")


def test_desktop_containers_require_the_password_and_show_the_page(
        stack: tuple[Daemon, int]) -> None:
    """stack.target in docker mode, with both shipped desktops (as processes and as containers):
    the process units are skipped by ConditionRuntime=process, the novnc-container and
    browser-container units run. noVNC answers on loopback and wants the desktop's password (a
    read-only secret file); Firefox shows the test page from the gateway container (the
    framebuffer read over RFB is not blank); `docker kill` of the novnc container → replaced and
    healthy, the password still wanted."""
    import uuid

    from tests.desktop.rfb_client import handshake
    from tests.runtimes.docker.docker_rfb_helpers import distinct_colours, read_framebuffer

    daemon, _ = stack
    novnc_port = int(daemon.env_extra["NOVNC_PORT"])
    images = daemon_images(daemon)
    suffix = uuid.uuid4().hex[:8]
    for name in PROCESS_DESKTOP:
        daemon.write_unit(f"{name}.service", (REPO_ROOT / "units" / f"{name}.service").read_text())
    daemon.write_unit("novnc-container.service",
                      shipped_desktop_unit("novnc-container.service", images["novnc"], suffix))
    daemon.write_unit("browser-container.service",
                      shipped_desktop_unit("browser-container.service", images["browser"], suffix))
    try:
        daemon.ctl.post("/reload")
        daemon.ctl.post("/units/stack.target/start")
        daemon.wait_healthy("novnc-container", timeout=90)
        for name in PROCESS_DESKTOP:
            skipped = daemon.wait_for(name, lambda s: s["state"] == "skipped", 30,
                                      "skipped in docker mode")
            assert "the runtime is docker (ConditionRuntime=process" in skipped["reason"], skipped
        password = (daemon.state_dir / "desktop" / "vnc-password").read_text().strip()
        url = f"ws://127.0.0.1:{novnc_port}/websockify"
        deadline = time.monotonic() + 30
        while True:  # websockify answers before x11vnc listens behind it
            try:
                refused = handshake(url, "wrongpw1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert not refused.authenticated, "a wrong password is refused"
        assert handshake(url, password).authenticated
        # Firefox needs a while to start and render the page through the gateway container.
        deadline = time.monotonic() + 120
        colours, width, height = 0, 0, 0
        while time.monotonic() < deadline:
            width, height, pixels = read_framebuffer(url, password)
            colours = distinct_colours(pixels)
            if colours >= 8:
                break
            time.sleep(2)
        assert colours >= 8, (f"the framebuffer ({width}x{height}) stayed blank: {colours} "
                              f"colours; browser log:\n"
                              f"{daemon.unit_log('browser-container', 40)}")
        novnc = daemon.container_of("novnc-container.service")
        assert novnc.attrs["HostConfig"]["PortBindings"]["6080/tcp"][0]["HostIp"] == "127.0.0.1"
        mounts = {m["Destination"]: m for m in novnc.attrs["Mounts"]}
        assert mounts["/run/secrets/vnc_password"]["RW"] is False

        novnc.kill()
        daemon.wait_for("novnc-container", lambda s: s["restarts"] >= 1 and s["state"] ==
                        "running" and s["health"] == "healthy", 90, "novnc replaced and healthy")
        assert daemon.container_of("novnc-container.service").id != novnc.id
        deadline = time.monotonic() + 30
        while True:  # the new container's x11vnc, behind websockify again
            try:
                assert handshake(url, password).authenticated
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        daemon.stop()
        for name in (f"lsd-x11-{suffix}", f"lsd-desktop-{suffix}"):
            with contextlib.suppress(Exception):
                daemon.docker.volumes.get(f"{name}-{daemon.owner}").remove(force=True)


def test_first_start_with_an_empty_model_path_installs_the_offline_model(
        daemon: Daemon, shipped_images: dict[str, str], tmp_path: Path) -> None:
    """`make run RUNTIME=docker` on a new machine: MODEL_PATH does not exist yet. The runtime
    creates it for the container's user (uid 10001), and the server inside copies the offline
    GGUF into the bind mount (another file system than its staging directory) and serves it."""
    if os.geteuid() != 0:
        pytest.skip("handing the new directory to uid 10001 needs root")
    model_path = tmp_path / "models" / "default"
    port = free_port()
    daemon.write_unit("stack.target", (REPO_ROOT / "units" / "stack.target").read_text())
    daemon.write_unit("model-service.service",
                      shipped_unit("model-service.service", shipped_images["model-service"]))
    daemon.env_extra.update({"MODEL_PATH": str(model_path), "MODEL_SERVICE_PORT": str(port),
                             "USE_INT8": "false"})
    daemon.start("stack.target")
    daemon.wait_healthy("model-service", timeout=300)
    assert os.stat(model_path).st_uid == IMAGE_UID
    assert any(p.suffix == ".gguf" for p in model_path.iterdir())
    response = httpx.post(f"http://127.0.0.1:{port}/api/generate", json=POLISH, timeout=120)
    assert response.status_code == 200, response.text
