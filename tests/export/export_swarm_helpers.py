"""The docker tests' engine and image fixtures (tests/runtimes/docker/conftest.py), reused here
rather than copied: its fixtures are re-exported for the swarm test module. Plus a small
``docker`` CLI runner and the swarm's clean-up."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import time
from pathlib import Path
from typing import Any


def load_docker_conftest() -> Any:
    return importlib.import_module("tests.runtimes.docker.conftest")


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
