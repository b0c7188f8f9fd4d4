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
import signal
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

from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning
from llm_supervisor.supervisor.runtimes import docker_labels as labels

REPO_ROOT = Path(__file__).resolve().parents[2]
BUSYBOX_TAG = "llm-supervisord-test/busybox:1"
TEST_TARGET = "test.target"


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
class Daemon:
    """A real llm-supervisord in the foreground, with its own state dir and units dir."""

    def __init__(self, root: Path, client: Any):
        self.root = root
        self.units_dir = root / "units"
        self.state_dir = root / "state"
        # A short path: Unix socket paths are limited to ~107 bytes and tmp_path can be long.
        self.socket = Path(tempfile.mkdtemp(prefix="lsd-")) / "control.sock"
        self.units_dir.mkdir(parents=True, exist_ok=True)
        self.docker = client
        self.owner = labels.owner_id(self.state_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "daemon.log"
        self.env_extra: dict[str, str] = {}
        self.ctl = ControlClient(self.socket, timeout=60)

    def write_unit(self, name: str, text: str) -> Path:
        path = self.units_dir / name
        path.write_text(text)
        return path

    def start(self, target: str = TEST_TARGET) -> None:
        if not (self.units_dir / TEST_TARGET).exists():
            self.write_unit(TEST_TARGET, "[Unit]\nDescription=docker tests\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_SUPERVISOR_")}
        env.update({
            "LLM_SUPERVISOR_STATE_DIR": str(self.state_dir),
            "LLM_SUPERVISOR_UNITS_DIR": str(self.units_dir),
            "LLM_SUPERVISOR_RUNTIME": "docker",
            "LLM_SUPERVISOR_CONFIG": str(self.root / "no-config.toml"),
            "PYTHONUNBUFFERED": "1",
            **self.env_extra,
        })
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start", target,
                 "--foreground", "--units-dir", str(self.units_dir), "--socket", str(self.socket)],
                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(DaemonNotRunning):
                self.ctl.get("/ping")
                return
            time.sleep(0.05)
        raise AssertionError(f"daemon did not answer:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self, unit: str) -> dict[str, Any]:
        return self.ctl.get(f"/units/{unit}")

    def unit_log(self, unit: str, tail: int = 200) -> str:
        return self.ctl.request("GET", f"/units/{unit}/logs", params={"tail": tail}).text

    def wait_for(self, unit: str, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = 30.0, what: str = "condition",
                 give_up_on: tuple[str, ...] = ()) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(ControlError):
                status = self.status(unit)
                if predicate(status):
                    return status
                if status.get("state") in give_up_on:
                    break
            time.sleep(0.1)
        with contextlib.suppress(Exception):
            status["log"] = self.unit_log(unit, 40)
        raise AssertionError(f"{unit}: {what} not reached in {timeout}s; last status {status}\n"
                             f"daemon log tail:\n{self.log()[-3000:]}")

    def wait_healthy(self, unit: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(unit, lambda s: s["state"] == "running" and s["health"] == "healthy",
                             timeout, "running+healthy", give_up_on=("failed", "skipped"))

    def containers(self, unit: str | None = None, all: bool = True) -> list[Any]:
        wanted = labels.owner_filter(self.owner)
        if unit is not None:
            wanted = [*wanted, f"{labels.UNIT}={unit}"]
        return self.docker.containers.list(all=all, filters={"label": wanted})

    def container_of(self, unit: str) -> Any:
        running = self.containers(unit, all=False)
        assert len(running) == 1, f"expected one running container for {unit}, got {running}"
        return running[0]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()}") from None

    def remove_leftovers(self) -> None:
        """Remove whatever this daemon's owner label still marks (after SIGKILL tests)."""
        mine = {"label": labels.owner_filter(self.owner)}
        for container in self.docker.containers.list(all=True, filters=mine):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        for collection in (self.docker.networks, self.docker.volumes):
            for obj in collection.list(filters=mine):
                with contextlib.suppress(Exception):
                    obj.remove()
        for image in self.docker.images.list(filters=mine):
            with contextlib.suppress(Exception):
                self.docker.images.remove(image.id, force=True)


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
