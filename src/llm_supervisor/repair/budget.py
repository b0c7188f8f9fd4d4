"""How many automatic repairs a unit may have before the plugin gives up.

Two rules (see :class:`~llm_supervisor.repair.context.Limits`):

- ``attempts`` in a row that did not bring the unit back to healthy (a source that serves bad
  bytes, a disk that corrupts what is written): the streak ends when the unit turns healthy;
- ``max_per_window`` attempts within ``window_sec`` whatever happened in between, so a model
  that keeps getting damaged (a dying disk) is not repaired forever.

Thread-safe: attempts are recorded from the repair worker thread, health from the event loop.

Persisted (:meth:`Budget.attach`, ``STATE_DIR/repair-budget.json``, written atomically on every
change): a daemon restart — or a crash loop of the daemon itself — does not hand a unit a fresh
budget. Times are wall-clock seconds for that reason.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from llm_supervisor.core.fsutil import atomic_write_json
from llm_supervisor.repair.context import Limits

log = structlog.get_logger("llm_supervisor.repair")


@dataclass
class _UnitBudget:
    streak: int = 0
    times: deque[float] = field(default_factory=deque)
    last_message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"streak": self.streak, "times": list(self.times), "last_message": self.last_message}

    @classmethod
    def from_dict(cls, data: Any) -> _UnitBudget:
        if not isinstance(data, dict):
            return cls()
        times = [float(t) for t in data.get("times", []) if isinstance(t, int | float)]
        streak = data.get("streak", 0)
        return cls(streak=streak if isinstance(streak, int) else 0, times=deque(sorted(times)),
                   last_message=str(data.get("last_message", "")))


class Budget:
    def __init__(self, clock: Callable[[], float] = time.time, path: Path | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._units: dict[str, _UnitBudget] = {}
        self._path: Path | None = None
        if path is not None:
            self.attach(path)

    def attach(self, path: Path) -> None:
        """Keep the budget in ``path``: load what a previous daemon spent, save every change."""
        with self._lock:
            self._path = path
            try:
                stored = json.loads(path.read_text())
            except FileNotFoundError:
                stored = {}
            except (OSError, ValueError) as exc:
                log.warning("repair_budget_unreadable", path=str(path), error=str(exc),
                            hint="starting with a fresh budget; the file is rewritten")
                stored = {}
            units = stored.get("units", {}) if isinstance(stored, dict) else {}
            for unit, data in units.items():
                self._units.setdefault(str(unit), _UnitBudget.from_dict(data))

    def _save(self) -> None:
        """Called with the lock held. A failed write (full disk) is logged, never raised: the
        budget in memory still holds."""
        if self._path is None:
            return
        data = {"version": 1, "units": {u: b.as_dict() for u, b in self._units.items()}}
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self._path, data, mode=0o600, indent=1)
        except OSError as exc:
            log.warning("repair_budget_not_saved", path=str(self._path), error=str(exc))

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
            self._save()

    def note(self, unit: str, message: str) -> None:
        """Remember how the latest attempt ended (quoted when giving up)."""
        with self._lock:
            if unit in self._units:
                self._units[unit].last_message = message
                self._save()

    def last_message(self, unit: str) -> str:
        with self._lock:
            state = self._units.get(unit)
            return state.last_message if state else ""

    def healthy(self, unit: str) -> None:
        """The unit is healthy again: the streak of unsuccessful attempts ends."""
        with self._lock:
            state = self._units.get(unit)
            if state is not None and state.streak:
                state.streak = 0
                self._save()

    def reset(self, unit: str) -> None:
        """A person asked for a repair: start afresh."""
        with self._lock:
            if self._units.pop(unit, None) is not None:
                self._save()

