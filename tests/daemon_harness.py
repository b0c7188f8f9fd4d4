"""Run a real llm-supervisord in a subprocess for tests: own state dir, own units dir, own socket.

Importable from any test (``from daemon_harness import Daemon, free_port``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_supervisor.cli.client import ControlClient, DaemonNotRunning
from tests.ports import free_port as free_port  # re-exported: the tests import it from here

PROJECT_DIR = Path(__file__).resolve().parents[1]


def free_low_port(first: int = 900) -> int:
    """A free privileged port (below 1024) on 127.0.0.1, or skip the test."""
    import pytest

    for port in range(first, 1024):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


class WaitAborted(AssertionError):
    """Raised by a ``wait_for`` predicate when waiting longer cannot help (the process died)."""


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05,
             diagnostics: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy; on timeout fail, appending
    ``diagnostics()`` (e.g. a log tail) to the message when given."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except WaitAborted:
            raise
        except Exception as exc:  # the thing we wait for may not exist yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else "")
                         + (f"\n{diagnostics()}" if diagnostics else ""))


class Daemon:
    """``llm-supervisord start --foreground`` with everything under ``root``."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, target: str | None = None):
        self.root = root
        self.units_dir = root / "units"
        self.state_dir = root / "state"
        self.socket = self.state_dir / "supervisor.sock"
        self.units_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "daemon.log"
        self.env = {**self.inherited_env(), "LLM_SUPERVISOR_STATE_DIR": str(self.state_dir),
                    "LLM_SUPERVISOR_UNITS_DIR": str(self.units_dir),
                    "LLM_SUPERVISOR_RUNTIME": "process", "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        self.target = target
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = ControlClient(self.socket, timeout=60)

    def inherited_env(self) -> dict[str, str]:
        """The part of this process's environment the daemon inherits (subclasses filter it)."""
        return dict(os.environ)

    def write_unit(self, name: str, text: str) -> Path:
        path = self.units_dir / name
        path.write_text(text)
        return path

    def start(self, timeout: float = 30) -> Daemon:
        argv = [sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start", "--foreground"]
        if self.target:
            argv.append(self.target)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, cwd=PROJECT_DIR)
        log.close()

        def answering() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise WaitAborted(f"daemon exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                self.client.get("/ping")
                return True
            except DaemonNotRunning:
                return False

        wait_for(answering, timeout, "the control socket", diagnostics=self.log_tail)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def unit(self, name: str) -> dict[str, Any]:
        return self.client.get(f"/units/{name}")

    def wait_state(self, name: str, state: str, timeout: float = 30, health: str | None = None
                   ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            unit = self.unit(name)
            if unit["state"] == state and (health is None or unit["health"] == health):
                return unit
            return None

        try:
            return wait_for(reached, timeout, f"{name} to be {state}/{health}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now: {self.unit(name)}") from None

    def ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                               str(self.socket), *args], env=self.env, capture_output=True,
                              text=True, check=check, timeout=120)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int | None:
        self.client.close()  # a kept-alive connection to a daemon going away; reopened on use
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log_text()}"
                                 ) from None


def sleeper_daemon(root: Path) -> Daemon:
    """A started daemon (no dashboard) whose stack runs one unit, ``sleeper``, now running."""
    daemon = Daemon(root, env={"DASHBOARD_PORT": "0"})
    daemon.write_unit("stack.target", "[Unit]\n")
    daemon.write_unit("sleeper.service", "[Service]\nExecStart=/bin/sleep 600\n"
                                         "[Install]\nWantedBy=stack.target\n")
    daemon.start()
    try:
        daemon.wait_state("sleeper", "running")
    except BaseException:
        daemon.stop()
        raise
    return daemon
