"""A real ``llm-supervisord start --foreground`` in a temporary state dir, for e2e tests.

Built on the shared :mod:`daemon_harness`. Unit files are copied from the repository's ``units/``
(the shipped files, unchanged); ports come from the environment (GATEWAY_PORT,
MODEL_SERVICE_PORT, NOVNC_PORT, ...), so tests never touch a running stack. Control goes through
:class:`ControlClient`, like the CLI.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.core.system_packages import UNIT_PROGRAMS
from tests import daemon_harness
from tests.daemon_harness import free_port, wait_for

__all__ = ["APT_PACKAGES", "REPO_ROOT", "Daemon", "Desktop", "Stack", "free_port",
           "require_programs", "wait_for"]

REPO_ROOT = daemon_harness.PROJECT_DIR
UNITS_DIR = REPO_ROOT / "units"

# Debian packages that provide each program the units need.
APT_PACKAGES = UNIT_PROGRAMS


def require_programs(*programs: str) -> None:
    """Skip loudly, naming the apt package, when a program is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        packages = " ".join(APT_PACKAGES.get(p, p) for p in missing)
        pytest.skip(f"{', '.join(missing)} not installed: sudo apt-get install {packages}")


class Daemon(daemon_harness.Daemon):
    """The shared harness daemon running shipped units, isolated from the caller's settings: no
    inherited ``LLM_SUPERVISOR_*``/``MODEL_*``/``HF_*`` variables and an empty config file."""

    def __init__(self, root: Path, units: Iterable[str], env: dict[str, str]):
        no_config = root / "no-config.toml"
        super().__init__(root, {"LLM_SUPERVISOR_CONFIG": str(no_config), **env})
        no_config.write_text("")
        for name in units:
            shutil.copy(UNITS_DIR / name, self.units_dir / name)

    def inherited_env(self) -> dict[str, str]:
        return {k: v for k, v in super().inherited_env().items()
                if not k.startswith(("LLM_SUPERVISOR_", "MODEL_", "HF_"))}

    def start(self, target: str | None = None, timeout: float = 30) -> Daemon:
        if target is not None:
            self.target = target
        super().start(timeout)
        return self

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


class Stack:
    """A daemon running the model service and the gateway (tests/gateway)."""

    def __init__(self, daemon: Daemon, gateway_port: int, admin_port: int, model_port: int,
                 program: str = "caddy"):
        self.daemon = daemon
        self.program = program
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
