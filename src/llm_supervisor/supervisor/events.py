"""Where every hook is fired and every event leaves for the control socket's listeners.

The runners and the manager report what happened here; this module turns it into the pluggy
hook call (keyword arguments only) and, where clients follow it, an event on their queues. No
other module calls a hook, so the hooks' order and arguments can be read in one place.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import pluggy
import structlog

from llm_supervisor.supervisor.outcomes import Diagnosis, RepairResult
from llm_supervisor.supervisor.state import Health, UnitState
from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.manager")

MAX_QUEUED = 1000  # a listener that stops reading loses events beyond this, never blocks us


class HookSource(Protocol):
    """What the supervisor needs of the plugin manager: its hook relay."""

    @property
    def hook(self) -> pluggy.HookRelay: ...


class Events:
    def __init__(self, plugins: HookSource):
        self._hook = plugins.hook
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ listeners
    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(queue)

    def notify(self, event: dict[str, Any]) -> None:
        """Send ``event`` to every listener, and wake whoever waits for any change."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for queue in self._listeners:
            if queue.qsize() < MAX_QUEUED:
                queue.put_nowait(event)

    def next_change(self) -> Coroutine[Any, Any, bool]:
        """Wait for the next event (dependency waits re-check on every change). The event is
        taken now, not when the wait starts: a change in between is not missed."""
        return self._changed.wait()

    # ------------------------------------------------------------------ the daemon
    def supervisor_started(self, view: Any) -> None:
        self._hook.supervisor_started(supervisor=view)

    def supervisor_stopping(self, view: Any) -> None:
        self._hook.supervisor_stopping(supervisor=view)

    def control_routes(self, app: Any, view: Any) -> None:
        self._hook.control_routes(app=app, supervisor=view)

    def add_units(self) -> list[Unit]:
        return [unit for extra in self._hook.add_units() for unit in extra]

    def gateway_routes(self, units: list[Unit]) -> list[list[dict[str, Any]] | None]:
        return list(self._hook.gateway_routes(units=units))

    def gateway_info(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._hook.gateway_info()
        return result

    async def rotation_changed(self, unit: Unit, serving: bool) -> None:
        """A rolling restart took ``unit`` out of the gateway's rotation or put it back; returns
        once every plugin that returned an awaitable (the gateway applying it) is done."""
        for result in self._hook.unit_rotation_changed(unit=unit, serving=serving):
            if inspect.isawaitable(result):
                await result

    def unit_environment(self, unit: Unit) -> dict[str, str]:
        """What plugins set for the unit's next start (earlier-registered plugins win)."""
        return _merged(self._hook.unit_environment(unit=unit))

    def unit_status(self, unit: Unit) -> dict[str, Any]:
        """Plugins' extra fields for the unit's status (``heal``, ...)."""
        return _merged(self._hook.unit_status(unit=unit))

    # ------------------------------------------------------------------ one unit's life
    def state_changed(self, unit: Unit, old: UnitState, new: UnitState, reason: str) -> None:
        self._hook.unit_state_changed(unit=unit, old=str(old), new=str(new), reason=reason)
        self.notify({"type": "state", "unit": unit.short_name, "from": str(old), "to": str(new),
                     "reason": reason})

    def failed(self, unit: Unit, reason: str) -> None:
        self._hook.unit_failed(unit=unit, reason=reason)

    def starting(self, unit: Unit, attempt: int) -> None:
        self._hook.unit_starting(unit=unit, attempt=attempt)

    def started(self, unit: Unit, pid: int | None) -> None:
        self._hook.unit_started(unit=unit, pid=pid)

    def exited(self, unit: Unit, exit_code: int | None, signal: int | None,
               log_tail: list[str]) -> None:
        self._hook.unit_exited(unit=unit, exit_code=exit_code, signal=signal, log_tail=log_tail)

    def health_checked(self, unit: Unit, ok: bool, latency_s: float) -> None:
        self._hook.unit_health_checked(unit=unit, ok=ok, latency_s=latency_s)

    def health_changed(self, unit: Unit, health: Health, detail: str,
                       latency: float | None) -> None:
        self._hook.unit_health_changed(unit=unit, health=str(health), detail=detail,
                                       latency_s=latency)
        self.notify({"type": "health", "unit": unit.short_name, "health": str(health),
                     "detail": detail})

    def diagnose(self, unit: Unit, exit_code: int | None, log_tail: list[str]) -> Diagnosis | None:
        result: Diagnosis | None = self._hook.diagnose_failure(unit=unit, exit_code=exit_code,
                                                               log_tail=log_tail)
        return result

    def repair(self, unit: Unit, diagnosis: Diagnosis,
               progress: Callable[..., None]) -> RepairResult | None:
        """Runs in a worker thread (``repair_unit`` may block)."""
        result: RepairResult | None = self._hook.repair_unit(unit=unit, diagnosis=diagnosis,
                                                             progress=progress)
        return result

    def repair_finished(self, unit: Unit, diagnosis: Diagnosis, result: RepairResult) -> None:
        log.info("repair_finished", unit=unit.name, diagnosis=diagnosis.kind, ok=result.ok,
                 message=result.message)
        self.notify({"type": "repair", "unit": unit.short_name, "ok": result.ok,
                     "message": result.message})


def _merged(answers: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Plugins' dict answers merged (pluggy returns the last registered first: earlier wins)."""
    merged: dict[str, Any] = {}
    for answer in reversed(answers):
        merged.update(answer or {})
    return merged
