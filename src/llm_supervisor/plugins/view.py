"""What plugins see of the running supervisor: a small, stable view, not the manager's internals.

Hooks that need the supervisor (``supervisor_started``, ``supervisor_stopping``,
``control_routes``) receive a :class:`SupervisorView`; the daemon's manager implements it. A
plugin reads units and their status, follows events, asks for starts and stops, and reads a
unit's log; it never touches runners, runtimes or the state machine, so those can change without
breaking a plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from llm_supervisor.config import Settings
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.units.model import Unit


class SupervisorView(Protocol):
    @property
    def settings(self) -> Settings:
        """The daemon's resolved settings (read-only by convention)."""

    def units(self) -> Mapping[str, Unit]:
        """Every loaded unit (services and targets) by full name (``gateway.service``)."""

    def unit_status(self, name: str) -> dict[str, Any] | None:
        """One service's status (as ``status --json``), None when there is no such service."""

    def statuses(self) -> list[dict[str, Any]]:
        """Every service's status, sorted by name."""

    def usages(self) -> list[dict[str, Any]]:
        """Every service's name, state, reason, ``cpu_percent`` and ``memory_bytes``, sorted by
        name: the part of :meth:`statuses` a sampler needs, without asking the plugins."""

    def is_up(self, name: str) -> bool:
        """The service is starting or running with a live process or container."""

    def runtime_of(self, name: str) -> str | None:
        """``process`` or ``docker``: the runtime the service runs in (None: no such service)."""

    def in_rotation(self, name: str) -> bool:
        """Whether the gateway may send the unit traffic (a rolling restart takes it out)."""

    def unit_log(self, name: str) -> UnitLog | None:
        """The service's log (tail, follow), None when there is no such service."""

    def environment_for(self, unit: Unit) -> dict[str, str]:
        """The environment the unit's programs get."""

    def gateway_routes(self, units: list[Unit]) -> list[list[dict[str, Any]] | None]:
        """Every plugin's answer to ``gateway_routes`` for ``units``."""

    def gateway_info(self) -> dict[str, Any] | None:
        """What the gateway serves now (the ``gateway_info`` hook): program, URL, routes."""

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of events (``state``, ``health``, ``repair``, ``reload``, ``error``)."""

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop receiving events on ``queue``."""

    def start_unit(self, name: str, reason: str = "start requested") -> list[str]:
        """Start a unit or target and what it pulls in; returns the services started."""

    async def stop_unit(self, name: str, reason: str = "stop requested") -> list[str]:
        """Stop a unit (and what requires it) or a target; returns the services stopped."""

    async def restart_unit(self, name: str) -> None:
        """Stop and start a unit."""
