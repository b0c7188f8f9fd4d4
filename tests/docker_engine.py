"""The Docker engine for every test that needs one (a pytest plugin, registered in
tests/conftest.py), so a test outside tests/runtimes/docker gets the engine too instead of
skipping when it runs before the docker tests started one.

- ``docker_client`` (session): a docker SDK client. When no engine answers and we are root with
  ``dockerd`` installed, a private ``dockerd`` is started for the session (log in a tmp file)
  and stopped at the end; where no engine can run the tests are skipped with a loud reason.
- ``busybox_image`` (session): a busybox rootfs imported with ``docker import`` (no registry).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes.docker.docker_fixtures import BUSYBOX_TAG


def pytest_itemcollected(item: pytest.Item) -> None:
    """Whatever needs the engine is marked ``docker`` as it is collected, so ``-m docker`` and
    ``-m "not docker"`` (make test runs them apart) see the mark."""
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
def busybox_rootfs_tar() -> bytes:
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
            busybox_rootfs_tar(), repository=repository, tag=tag,
            changes=["ENV PATH=/bin", 'CMD ["sh"]'])
    return BUSYBOX_TAG
