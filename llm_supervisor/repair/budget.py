"""How many automatic repairs a unit may have before the plugin gives up.

Two rules (see :class:`~llm_supervisor.repair.context.Limits`):

- ``attempts`` in a row that did not bring the unit back to healthy (a source that serves bad
  bytes, a disk that corrupts what is written): the streak ends when the unit turns healthy;
- ``max_per_window`` attempts within ``window_sec`` whatever happened in between, so a model
  that keeps getting damaged (a dying disk) is not repaired forever.

Thread-safe: attempts are recorded from the repair worker thread, health from the event loop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from llm_supervisor.repair.context import Limits


@dataclass
class _UnitBudget:
    streak: int = 0
    times: deque[float] = field(default_factory=deque)
    last_message: str = ""


class Budget:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._units: dict[str, _UnitBudget] = {}

    def _get(self, unit: str, limits: Limits) -> _UnitBudget:
        state = self._units.setdefault(unit, _UnitBudget())
        horizon = self._clock() - limits.window_sec
        while state.times and state.times[0] < horizon:
            state.times.popleft()
        return state

    def exhausted(self, unit: str, limits: Limits) -> str | None:
        """Why no further attempt may be made, else None."""
        with self._lock:
            state = self._get(unit, limits)
            if state.streak >= limits.attempts:
                return (f"{state.streak} repair attempt(s) in a row did not bring it back to "
                        f"healthy")
            if len(state.times) >= limits.max_per_window:
                return (f"{len(state.times)} repairs within {limits.window_sec:g}s "
                        f"(MODEL_REPAIR_MAX_PER_WINDOW={limits.max_per_window})")
            return None

    def record(self, unit: str, limits: Limits, message: str) -> None:
        with self._lock:
            state = self._get(unit, limits)
            state.streak += 1
            state.times.append(self._clock())
            state.last_message = message

    def note(self, unit: str, message: str) -> None:
        """Remember how the latest attempt ended (quoted when giving up)."""
        with self._lock:
            if unit in self._units:
                self._units[unit].last_message = message

    def last_message(self, unit: str) -> str:
        with self._lock:
            state = self._units.get(unit)
            return state.last_message if state else ""

    def healthy(self, unit: str) -> None:
        """The unit is healthy again: the streak of unsuccessful attempts ends."""
        with self._lock:
            state = self._units.get(unit)
            if state is not None:
                state.streak = 0

    def reset(self, unit: str) -> None:
        """A person asked for a repair: start afresh."""
        with self._lock:
            self._units.pop(unit, None)
