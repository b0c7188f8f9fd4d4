"""What the heals did, per unit: the status line (``degraded: ...`` / ``healed: ...``), the
variables the next start gets (:func:`Ledger.environment`), and counters for ``/metrics``."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    kind: str = ""
    state: str = ""  # "degraded" (running cheaper / moved / on the other engine) or "healed"
    line: str = ""
    since: float = 0.0
    overrides: dict[str, str] = field(default_factory=dict)
    heals: dict[str, int] = field(default_factory=dict)  # kind -> times healed


class Ledger:
    """Thread-safe: repairs run in worker threads, status is read on the event loop."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, unit: str) -> Entry:
        return self._entries.setdefault(unit, Entry())

    def degraded(self, unit: str, kind: str, line: str,
                 overrides: dict[str, str] | None = None) -> None:
        with self._lock:
            entry = self._entry(unit)
            entry.kind, entry.state, entry.line, entry.since = kind, "degraded", line, time.time()
            if overrides is not None:
                entry.overrides.update(overrides)
            entry.heals[kind] = entry.heals.get(kind, 0) + 1

    def healed(self, unit: str, line: str | None = None) -> bool:
        """The unit answers again: ``degraded`` becomes ``healed`` (the overrides stay)."""
        with self._lock:
            entry = self._entries.get(unit)
            if entry is None or entry.state != "degraded":
                return False
            entry.state, entry.since = "healed", time.time()
            entry.line = line or entry.line
            return True

    def clear_overrides(self, unit: str, keys: list[str]) -> None:
        with self._lock:
            entry = self._entry(unit)
            for key in keys:
                entry.overrides.pop(key, None)

    def environment(self, unit: str) -> dict[str, str]:
        with self._lock:
            entry = self._entries.get(unit)
            return dict(entry.overrides) if entry else {}

    def status(self, unit: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(unit)
            if entry is None or not entry.state:
                return None
            return {"state": entry.state, "kind": entry.kind,
                    "line": f"{entry.state}: {entry.line}", "since": entry.since,
                    "overrides": dict(entry.overrides), "heals": dict(entry.heals)}
