"""Helpers for the docker runtime tests (imported by conftest.py and the test modules; a
module of its own because ``conftest`` is an ambiguous name when several test directories have
one)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning
from llm_supervisor.runtimes.docker import labels

REPO_ROOT = Path(__file__).resolve().parents[3]
BUSYBOX_TAG = "llm-supervisord-test/busybox:1"
TEST_TARGET = "test.target"


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


