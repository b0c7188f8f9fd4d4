"""Fixtures for the docker runtime tests: a real engine, registry-free images, a real daemon.

- ``docker_client`` (session): a docker SDK client. When no engine answers and we are root with
  ``dockerd`` installed, a private ``dockerd`` is started for the session (log in a tmp file)
  and stopped at the end; where no engine can run the tests are skipped with a loud reason.
- ``busybox_image`` (session): a busybox rootfs imported with ``docker import`` (no registry).
- ``host_python_volumes``: Volumes= lines that let that image run the host's Python and our
  venv read-only (so the model server runs in a container without building a Python image).
- ``daemon_factory``: a real ``llm-supervisord start --foreground`` subprocess with its own state
  dir and units dir, forced onto the docker runtime, controlled through ControlClient.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes.docker.docker_fixtures import BUSYBOX_TAG, REPO_ROOT, Daemon


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever needs the engine is marked ``docker`` (the pure parsing tests here are not)."""
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


# --------------------------------------------------------------------------- the engine
def _ping() -> Any | None:
    try:
        import docker

        client = docker.from_env(timeout=30, version="auto")
        client.ping()
        return client
    except Exception:
        return None


def _skip_loudly(reason: str) -> None:
    message = f"DOCKER TESTS SKIPPED: {reason}"
    warnings.warn(message, stacklevel=2)
    sys.stderr.write(f"\n*** {message} ***\n")
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = _ping()
    started: subprocess.Popen[bytes] | None = None
    log_path = None
    if client is None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            _skip_loudly("no Docker engine answers and dockerd is not installed "
                         "(apt-get install -y docker.io)")
        if os.geteuid() != 0:
            _skip_loudly("no Docker engine answers and starting dockerd needs root "
                         "(start it: sudo systemctl start docker)")
        log_fd, log_path = tempfile.mkstemp(prefix="dockerd-test-", suffix=".log")
        started = subprocess.Popen([dockerd], stdout=log_fd, stderr=log_fd,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(log_fd)
        deadline = time.monotonic() + 60
        while client is None and time.monotonic() < deadline and started.poll() is None:
            time.sleep(0.2)
            client = _ping()
        if client is None:
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            with contextlib.suppress(ProcessLookupError):
                started.terminate()
            _skip_loudly(f"dockerd did not come up (log {log_path}):\n{tail}")
    try:
        yield client
    finally:
        client.close()
        if started is not None:
            started.terminate()
            try:
                started.wait(30)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()


# --------------------------------------------------------------------------- images
def _busybox_rootfs_tar() -> bytes:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install -y busybox-static)")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "www"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """A local busybox image, imported once per engine (a fraction of a second)."""
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(BUSYBOX_TAG)
    except ImageNotFound:
        repository, tag = BUSYBOX_TAG.split(":")
        docker_client.api.import_image_from_data(
            _busybox_rootfs_tar(), repository=repository, tag=tag,
            changes=["ENV PATH=/bin", 'CMD ["sh"]'])
    return BUSYBOX_TAG


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
