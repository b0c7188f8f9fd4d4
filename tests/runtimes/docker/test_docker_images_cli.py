"""`llm-supervisorctl images build` against the real engine, and the error a build step gives
when a package registry does not answer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.base_image import BASE_TAG
from llm_supervisor.runtimes.docker.build import build_if_changed, plan_path
from tests.runtimes.docker.docker_fixtures import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def ctl(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_SUPERVISOR_")}
    env.update({"LLM_SUPERVISOR_STATE_DIR": str(state_dir),
                "LLM_SUPERVISOR_UNITS_DIR": str(REPO_ROOT / "units"),
                "LLM_SUPERVISOR_CONFIG": str(state_dir / "none.toml")})
    return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", *args], env=env,
                          capture_output=True, text=True, timeout=900, cwd=state_dir)


def test_images_build_prepares_what_the_daemon_uses(docker_client: Any,
                                                    shipped_images: dict[str, str],
                                                    tmp_path: Path) -> None:
    owner = labels.owner_id(tmp_path)
    try:
        first = ctl(tmp_path, "images", "build", "-q")
        assert first.returncode == 0, first.stderr + first.stdout
        for index, unit in enumerate(["browser-container.service", "gateway.service",
                                      "model-service.service", "novnc-container.service"], 1):
            assert f"[{index}/4] {unit}" in first.stdout, first.stdout[-2000:]
        assert "4 image(s) ready" in first.stdout
        for unit in ("gateway", "model-service", "browser-container", "novnc-container"):
            image = docker_client.images.get(f"llm-supervisord/{unit}:{owner[:6]}")
            assert labels.owned_by(image.labels, owner)
        again = ctl(tmp_path, "images", "build", "gateway", "-q")
        assert again.returncode == 0 and "up to date" in again.stdout, again.stdout
    finally:
        for image in docker_client.images.list(filters={"label": labels.owner_filter(owner)}):
            with contextlib.suppress(Exception):
                docker_client.images.remove(image.id, force=True)


def test_unreachable_registry_names_the_step(docker_client: Any, shipped_images: dict[str, str],
                                             tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN python3 -m venv /v\n"
        "RUN /v/bin/pip install --retries 0 --timeout 2 "
        "--index-url http://127.0.0.1:9/simple some-package\n")
    plan = plan_path(tmp_path, "Dockerfile", "llm-supervisord-test/unreachable:1", BASE_TAG)
    with pytest.raises(RuntimeError_) as caught:
        build_if_changed(docker_client, plan, {}, lambda line: None)
    message = str(caught.value)
    assert "image build failed at Step 4/5 : RUN /v/bin/pip install" in message  # 5: our LABEL
    assert "a package registry (Debian apt or PyPI) did not answer" in message
