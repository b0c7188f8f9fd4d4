"""A unit's repairs: after an abnormal exit a plugin may diagnose the failure (``diagnose_failure``)
and repair it (``repair_unit``, in a worker thread) while the unit is ``repairing``; by hand,
``llm-supervisorctl repair`` stops the unit, repairs and starts it again (the old
``fix_model_service.sh``). One repair per unit at a time: two would delete each other's work
directories.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, Protocol

from llm_supervisor.runtimes.base import ExitStatus
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.supervisor.events import Events
from llm_supervisor.supervisor.outcomes import Diagnosis, RepairResult
from llm_supervisor.supervisor.state import UnitState
from llm_supervisor.units.model import Unit

DIAGNOSE_LOG_LINES = 200


class RepairAlreadyRunning(Exception):
    """A second repair of the same unit was asked for while one runs (the control API: 409)."""

    def __init__(self, unit: str):
        super().__init__(f"a repair of {unit} is already running; wait for it to finish "
                         f"(`llm-supervisorctl status {unit}` shows its progress)")


class Repaired(Protocol):
    """What a repair reads and changes of the unit's runner."""

    unit: Unit
    log: UnitLog
    reason: str
    repair_progress: float | None

    def set_state(self, state: UnitState, reason: str) -> None: ...

    def start(self, reason: str = "start requested") -> None: ...

    async def stop(self, reason: str = "stop requested") -> None: ...

    def clear_start_limit(self) -> None: ...


class RepairFlow:
    def __init__(self, runner: Repaired, events: Events):
        self.runner = runner
        self.events = events
        # One repair per unit at a time: two would delete each other's work directories. A
        # reload holds it too (supervisor/reload_guard.py).
        self.lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self.lock.locked()

    async def after_exit(self, status: ExitStatus) -> bool | None:
        """After an abnormal exit. None: no plugin recognised the failure (the restart policy
        applies). True: repaired, restart now. False: gave up (the unit is failed)."""
        if self.lock.locked():
            return None  # a repair by hand is under way; it restarts the unit itself
        runner = self.runner
        diagnosis = self.events.diagnose(runner.unit, status.code,
                                         runner.log.last(DIAGNOSE_LOG_LINES))
        if diagnosis is None:
            return None
        async with self.lock:
            result = await self._run(diagnosis)
        if result is None:
            return None
        if result.ok:
            return True
        if result.give_up:
            runner.set_state(UnitState.FAILED, f"repair gave up: {result.message}")
            return False
        return None

    async def by_hand(self, verify_only: bool = False) -> dict[str, Any] | None:
        """``llm-supervisorctl repair``: stop, repair through the plugins, start again. With
        ``verify_only`` nothing is stopped or changed.

        Raises :class:`RepairAlreadyRunning` at once (no queueing) while another repair of this
        unit, automatic or by hand, runs."""
        runner = self.runner
        diagnosis = Diagnosis(kind="manual", summary="repair requested by hand",
                              details={"verify_only": verify_only})
        if verify_only:
            result = await asyncio.to_thread(self.events.repair, runner.unit, diagnosis,
                                             lambda fraction, message="": None)
            return None if result is None else asdict(result)
        if self.lock.locked():
            raise RepairAlreadyRunning(runner.unit.short_name)
        async with self.lock:
            # Taken without yielding, before stop(): no automatic repair can start in between.
            await runner.stop("stopped for repair")
            result = await self._run(diagnosis)
        if result is None:
            runner.set_state(UnitState.INACTIVE, "no plugin can repair this unit")
            return None
        if result.ok:
            runner.start("restart after repair")
        else:
            runner.set_state(UnitState.FAILED, f"repair failed: {result.message}")
        return asdict(result)

    async def _run(self, diagnosis: Diagnosis) -> RepairResult | None:
        """State ``repairing`` while ``repair_unit`` runs in a worker thread, its progress shown
        in status; returns the plugin's result (None: nobody repairs)."""
        runner = self.runner
        runner.set_state(UnitState.REPAIRING, diagnosis.summary)
        runner.repair_progress = 0.0
        loop = asyncio.get_running_loop()

        def progress(fraction: float, message: str = "") -> None:
            runner.repair_progress = fraction
            if message:
                loop.call_soon_threadsafe(self._note_progress, message)

        try:
            result = await asyncio.to_thread(self.events.repair, runner.unit, diagnosis, progress)
        finally:
            runner.repair_progress = None
        if result is not None:
            self.events.repair_finished(runner.unit, diagnosis, result)
            if result.ok:
                runner.clear_start_limit()
        return result

    def _note_progress(self, message: str) -> None:
        self.runner.reason = message
        self.runner.log.note(f"repair: {message}")
