"""The docker tests' engine and image fixtures (tests/docker/conftest.py), reused here rather
than copied: that conftest is loaded under a name of its own and its fixtures are re-exported
for the swarm test module. Plus a small ``docker`` CLI runner and the swarm's clean-up."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DOCKER_TESTS = Path(__file__).resolve().parents[1] / "docker"


def load_docker_conftest() -> Any:
    if str(DOCKER_TESTS) not in sys.path:
        sys.path.insert(0, str(DOCKER_TESTS))  # its own imports (docker_fixtures)
    spec = importlib.util.spec_from_file_location("docker_engine_fixtures_for_export",
                                                  DOCKER_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docker(*args: str, timeout: float = 120, check: bool = True,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                            cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def remove_stack(client: Any, stack: str, timeout: float = 90) -> None:
    """``docker stack rm``, then wait until its tasks' containers and its network are gone (the
    removal is asynchronous), then remove its volumes."""
    docker("stack", "rm", stack, check=False)
    label = f"com.docker.stack.namespace={stack}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        containers = client.containers.list(all=True, filters={"label": label})
        networks = client.networks.list(filters={"label": label})
        if not containers and not networks:
            break
        time.sleep(0.5)
    for volume in client.volumes.list(filters={"label": label}):
        with contextlib.suppress(Exception):
            volume.remove(force=True)
