"""The one runtime interface. Two implementations: ``process`` (local processes, the embedded
default) and ``docker`` (containers through the docker SDK).

The supervisor's policy engine (restarts, backoff, health, ordering) is the same for both; a
runtime only knows how to start one instance of a unit, wait for it, stop it, and find
instances left from a previous daemon.
"""

from __future__ import annotations

import abc
import signal as signal_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from llm_supervisor.core.errors import RuntimeError_  # noqa: F401  (re-exported: the runtimes' error)
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.units.model import Unit


@dataclass(frozen=True)
class ExitStatus:
    code: int | None = None
    signal: int | None = None

    @property
    def clean(self) -> bool:
        return self.code == 0

    @property
    def abnormal(self) -> bool:
        """Killed by a signal. (``Restart=on-abnormal`` also restarts a unit ended for failed
        health: :class:`llm_supervisor.supervisor.runner.UnitRunner` decides that.)"""
        return self.signal is not None

    def describe(self) -> str:
        if self.signal is not None:
            try:
                return f"killed by {signal_module.Signals(self.signal).name}"
            except ValueError:
                return f"killed by signal {self.signal}"
        return f"exited {self.code}"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "signal": self.signal, "text": self.describe()}


class Instance(abc.ABC):
    """One running incarnation of a unit."""

    pid: int | None = None
    ident: str = ""

    @abc.abstractmethod
    async def wait(self) -> ExitStatus:
        """Return when the instance has exited (cancellable)."""

    @abc.abstractmethod
    async def stop(self, kill_signal: int, timeout: float) -> ExitStatus:
        """Send ``kill_signal`` to everything the instance runs, wait ``timeout``, then kill."""

    def record(self) -> dict[str, Any]:
        """What to persist so a restarted daemon can find (clean up or adopt) this instance."""
        return {"pid": self.pid, "ident": self.ident}


class Runtime(abc.ABC):
    name: ClassVar[str]

    @abc.abstractmethod
    async def start(self, unit: Unit, env: Mapping[str, str], log: UnitLog) -> Instance:
        """Start the unit's main program; raise :class:`RuntimeError_` with a clear message."""

    @abc.abstractmethod
    async def run_pre(self, unit: Unit, argv: list[str], env: Mapping[str, str], log: UnitLog,
                      timeout: float) -> ExitStatus:
        """Run one ExecStartPre= command to completion, within ``timeout`` seconds."""

    async def recover(self, unit: Unit, record: dict[str, Any], log: UnitLog) -> Instance | None:
        """After a daemon restart: adopt the instance in ``record`` or clean it up (return None)."""
        return None

    async def remove_owned(self, purge: bool = False) -> list[str]:
        """Remove every object this runtime created (``reset``); with ``purge`` also volumes and
        caches (``shutdown --purge``). Returns what was removed."""
        return []

    async def close(self) -> None:
        """Release runtime resources at daemon shutdown."""
