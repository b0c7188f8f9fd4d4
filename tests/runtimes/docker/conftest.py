"""Fixtures for the docker runtime tests: a real engine, registry-free images, a real daemon.

- ``docker_client`` and ``busybox_image`` (session) come from :mod:`tests.docker_engine`.
- ``host_python_volumes``: Volumes= lines that let that image run the host's Python and our
  venv read-only (so the model server runs in a container without building a Python image).
- ``daemon_factory``: a real ``llm-supervisord start --foreground`` subprocess with its own state
  dir and units dir, forced onto the docker runtime, controlled through ControlClient.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes.docker.docker_fixtures import REPO_ROOT, Daemon


@pytest.fixture(scope="session")
def host_python_volumes() -> list[str]:
    """Read-only bind mounts that make the host's Python, its venv and this checkout usable
    inside the busybox image. /lib and /lib64 are mounted by their own names: on a merged-/usr
    system they are symlinks, and the dynamic loader is looked up through them."""
    system = [p for p in ("/usr", "/lib", "/lib64") if os.path.exists(p)]
    extra = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, str(REPO_ROOT))}
    covered = [*system, *extra]
    keep = sorted(p for p in extra
                  if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in covered))
    return [f"{p}:{p}:ro" for p in [*system, *keep]]


# --------------------------------------------------------------------------- the daemon
@pytest.fixture
def daemon_factory(tmp_path: Path, docker_client: Any) -> Iterator[Callable[[], Daemon]]:
    daemons: list[Daemon] = []

    def make() -> Daemon:
        daemon = Daemon(tmp_path / f"d{len(daemons)}", docker_client)
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        with contextlib.suppress(Exception):
            daemon.stop()
        daemon.ctl.close()
        daemon.remove_leftovers()


@pytest.fixture
def daemon(daemon_factory: Callable[[], Daemon]) -> Daemon:
    return daemon_factory()


# --------------------------------------------------------------------------- shipped images
@pytest.fixture(scope="session")
def shipped_images(docker_client: Any) -> dict[str, str]:
    """Every shipped Dockerfile (but the CUDA one) built through the daemon's own build path
    (base image, host wheels, build digest), once per engine: the tag carries no hash, the
    image's build-digest label does, so an unchanged input is reused in seconds and a changed one
    is rebuilt. First build on 2 cores: about 5 minutes (base image ~50 s, model-service ~70 s)."""
    from tests.runtimes.docker.docker_images_helpers import build_shipped

    return build_shipped(docker_client)
