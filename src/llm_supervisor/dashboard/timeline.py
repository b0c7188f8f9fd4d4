"""The dashboard's timeline: the supervisor's events (``SupervisorView.subscribe()``) turned into
marks an operator reads — a unit started, stopped, exited and is restarting (with the reason),
failed, changed health, was repaired or healed — kept in memory, the newest :data:`KEEP`.

Units skipped because the other runtime runs them (``ConditionRuntime=``) are left out: they
say nothing about what is running.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

KEEP = 1000

# state the unit entered -> (kind, words)
_STATES = {
    "starting": ("start", "starting"),
    "running": ("running", "running"),
    "stopping": ("stopping", "stopping"),
    "inactive": ("stop", "stopped"),
    "backoff": ("exit", "exited"),
    "failed": ("failed", "failed"),
    "skipped": ("skipped", "skipped"),
    "repairing": ("repair", "repairing"),
}


def is_other_runtime_skip(state: str | None, reason: str | None) -> bool:
    """Skipped because ``ConditionRuntime=`` names the runtime this unit does not get."""
    return state == "skipped" and "ConditionRuntime=" in (reason or "")


def entry_for(event: dict[str, Any]) -> dict[str, Any] | None:
    """One timeline entry for a supervisor event, None for events the timeline does not show."""
    kind = event.get("type")
    unit = event.get("unit")
    if kind == "state":
        new, old, reason = event.get("to", ""), event.get("from", ""), event.get("reason", "")
        if new == "stopping" or is_other_runtime_skip(new, reason):
            return None
        mark, words = _STATES.get(new, (new, new))
        if new == "starting" and old in ("backoff", "repairing", "failed"):
            mark, words = "restart", "restarting"
        return {"unit": unit, "kind": mark, "text": f"{unit} {words}", "reason": reason}
    if kind == "health":
        health = event.get("health", "")
        return {"unit": unit, "kind": "health", "text": f"{unit} {health}",
                "reason": event.get("detail", ""), "health": health}
    if kind in ("repair", "heal"):
        done = "done" if event.get("ok") else "gave up"
        return {"unit": unit, "kind": kind, "text": f"{unit} {kind} {done}",
                "reason": event.get("message", ""), "ok": bool(event.get("ok"))}
    if kind == "reload":
        changed = {k: v for k, v in event.items() if k != "type" and v}
        return {"unit": None, "kind": "reload", "text": "units reloaded",
                "reason": ", ".join(f"{k}: {v}" for k, v in changed.items())}
    if kind == "error":
        return {"unit": None, "kind": "error", "text": "error", "reason": event.get("message", "")}
    return None


class Timeline:
    def __init__(self, keep: int = KEEP):
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._ids = itertools.count(1)

    def add(self, event: dict[str, Any], at: float | None = None) -> dict[str, Any] | None:
        entry = entry_for(event)
        if entry is None:
            return None
        entry = {"id": next(self._ids), "at": time.time() if at is None else at, **entry}
        self.entries.append(entry)
        return entry

    def since(self, after_id: int = 0, unit: str | None = None,
              limit: int = KEEP) -> list[dict[str, Any]]:
        found = [e for e in self.entries if e["id"] > after_id and
                 (unit is None or e["unit"] == unit)]
        return found[-limit:] if limit > 0 else []
