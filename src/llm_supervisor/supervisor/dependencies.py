"""Waiting for a unit's dependencies: every ``After=`` unit that is coming up must be ready, and
every ``Requires=`` unit must exist and be neither failed nor skipped.

The answer is a :class:`Verdict`, not a sentence: the runner goes on (``READY``), stops because
it was asked to (``STOPPED``), or follows a required unit into ``failed`` or ``skipped``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from llm_supervisor.supervisor.state import UnitState
from llm_supervisor.units.model import Unit


class Outcome(Enum):
    READY = "ready"  # every After= unit that is coming up is ready: go on
    STOPPED = "stopped"  # a stop was asked for while waiting
    FAILED = "failed"  # a required unit failed or does not exist: fail too
    SKIPPED = "skipped"  # a required unit was skipped by its condition: skip too


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


READY = Verdict(Outcome.READY)
STOPPED = Verdict(Outcome.STOPPED)


class Dependency(Protocol):
    """What the wait reads of another unit's runner."""

    unit: Unit
    state: UnitState
    wanted: bool

    @property
    def ready(self) -> bool: ...

    @property
    def settled_down(self) -> bool: ...


def _blocked(other: Dependency) -> Verdict:
    outcome = Outcome.SKIPPED if other.state == UnitState.SKIPPED else Outcome.FAILED
    return Verdict(outcome, f"required unit {other.unit.short_name} is {other.state}")


def check(unit: Unit, runners: Mapping[str, Dependency]) -> tuple[Verdict | None, list[str]]:
    """One look: a final verdict (None while waiting) and the units still being waited for."""
    waiting = []
    for dep in unit.after:
        other = runners.get(dep)
        if other is None or other.ready:
            continue
        if other.settled_down or not other.wanted:
            if dep in unit.requires and other.state in (UnitState.FAILED, UnitState.SKIPPED):
                return _blocked(other), []
            continue
        waiting.append(other.unit.short_name)
    for dep in unit.requires:
        other = runners.get(dep)
        if other is None:
            return Verdict(Outcome.FAILED, f"required unit {dep} does not exist"), []
        if other.state in (UnitState.FAILED, UnitState.SKIPPED):
            return _blocked(other), []
    return (None if waiting else READY), waiting


async def wait_for(unit: Unit, runners: Mapping[str, Dependency], stop: asyncio.Event,
                   next_change: Callable[[], Awaitable[object]],
                   announce: Callable[[list[str]], None]) -> Verdict:
    """Re-check on every change of any unit until a verdict; ``announce`` is told once what the
    unit waits for."""
    announced = False
    while not stop.is_set():
        verdict, waiting = check(unit, runners)
        if verdict is not None:
            return verdict
        if not announced:
            announce(waiting)
            announced = True
        stop_wait = asyncio.ensure_future(stop.wait())
        change_wait = asyncio.ensure_future(next_change())
        await asyncio.wait({stop_wait, change_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        change_wait.cancel()
    return STOPPED
