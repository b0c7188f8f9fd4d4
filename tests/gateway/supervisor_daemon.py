"""A real ``llm-supervisord start --foreground`` in a temporary state dir, for e2e tests.

Unit files are copied from the repository's ``units/`` (the shipped files, unchanged); ports come
from the environment (GATEWAY_PORT, MODEL_SERVICE_PORT, NOVNC_PORT, ...), so tests never touch a
running stack. Control goes through :class:`ControlClient`, like the CLI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.cli.client import ControlClient, DaemonNotRunning

REPO_ROOT = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO_ROOT / "units"

# Debian packages that provide each program the units need.
APT_PACKAGES = {"caddy": "caddy", "Xvfb": "xvfb", "x11vnc": "x11vnc", "websockify": "websockify",
                "chromium": "chromium"}


def require_programs(*programs: str) -> None:
    """Skip loudly, naming the apt package, when a program is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        packages = " ".join(APT_PACKAGES.get(p, p) for p in missing)
        pytest.skip(f"{', '.join(missing)} not installed: sudo apt-get install {packages}")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05,
             diagnostics: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing we wait for may not answer yet
            last_error = exc
        time.sleep(interval)
    extra = f"\n{diagnostics()}" if diagnostics else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: "
                         f"{last_error!r}){extra}")


class Daemon:
    def __init__(self, root: Path, units: Iterable[str], env: dict[str, str]):
        self.root = root
        self.state_dir = root / "state"
        self.units_dir = root / "units"
        self.units_dir.mkdir(parents=True, exist_ok=True)
        for name in units:
            shutil.copy(UNITS_DIR / name, self.units_dir / name)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("LLM_SUPERVISOR_", "MODEL_", "HF_"))}
        self.env.update({
            "LLM_SUPERVISOR_STATE_DIR": str(self.state_dir),
            "LLM_SUPERVISOR_UNITS_DIR": str(self.units_dir),
            "LLM_SUPERVISOR_RUNTIME": "process",
            "LLM_SUPERVISOR_CONFIG": str(root / "no-config.toml"),
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env)
        self.socket = self.state_dir / "supervisor.sock"
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = ControlClient(self.socket, timeout=60)

    def start(self, target: str) -> Daemon:
        (self.root / "no-config.toml").write_text("")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start", target,
                 "--foreground", "--units-dir", str(self.units_dir)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT)

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return bool(self.client.get("/ping"))
            except DaemonNotRunning:
                return False

        wait_for(answers, 30, "the daemon's control socket", diagnostics=self.log_tail)
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def unit(self, name: str) -> dict[str, Any]:
        return self.client.get(f"/units/{name}")

    def unit_log(self, name: str, tail: int = 40) -> str:
        return self.client.request("GET", f"/units/{name}/logs", params={"tail": tail}).text

    def diagnostics(self, *names: str) -> str:
        parts = []
        for name in names:
            try:
                status = self.unit(name)
                parts.append(f"--- {name}: {status['state']} ({status['reason']})\n"
                             f"{self.unit_log(name)}")
            except Exception as exc:
                parts.append(f"--- {name}: {exc!r}")
        return "\n".join(parts) + f"\n--- daemon\n{self.log_tail(20)}"

    def wait_ready(self, name: str, timeout: float) -> dict[str, Any]:
        """Running and (if it has a check) healthy."""

        def ready() -> dict[str, Any] | None:
            status = self.unit(name)
            if status["state"] in ("failed", "skipped"):
                raise AssertionError(f"{name} is {status['state']}: {status['reason']}\n"
                                     f"{self.unit_log(name)}")
            if status["state"] == "running" and status["health"] in ("none", "healthy"):
                return status
            return None

        return wait_for(ready, timeout, f"{name} to be ready", interval=0.1,
                        diagnostics=lambda: self.diagnostics(name))

    def stop(self, timeout: float = 40) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.client.close()


class Stack:
    """A daemon running the model service and the gateway (tests/gateway)."""

    def __init__(self, daemon: Daemon, gateway_port: int, admin_port: int, model_port: int):
        self.daemon = daemon
        self.gateway_port = gateway_port
        self.admin_port = admin_port
        self.model_port = model_port
        self.url = f"http://127.0.0.1:{gateway_port}"

    def http(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


class Desktop:
    """A daemon running browser-test.target (tests/desktop)."""

    def __init__(self, daemon: Daemon, ports: dict[str, int]):
        self.daemon = daemon
        self.ports = ports
        self.novnc_url = f"http://127.0.0.1:{ports['NOVNC_PORT']}"
