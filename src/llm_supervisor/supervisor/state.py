"""Unit states and health values (strings on the wire, enums in code), and which state may
follow which: the one table :meth:`UnitRunner.set_state` checks, as supervisord asserts its
process states before every change.

::

    inactive → starting → running (healthy | unhealthy) → stopping → inactive
                   ↘ backoff ↗        ↘ repairing ↗           ↘ failed / skipped
"""

from __future__ import annotations

from enum import StrEnum


class UnitState(StrEnum):
    INACTIVE = "inactive"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    FAILED = "failed"
    SKIPPED = "skipped"
    REPAIRING = "repairing"


class Health(StrEnum):
    NONE = "none"  # the unit has no [Health] check
    UNKNOWN = "unknown"  # not checked yet / within StartPeriod
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


# States in which the unit is settled and will not come up by itself.
TERMINAL = frozenset({UnitState.INACTIVE, UnitState.FAILED, UnitState.SKIPPED})

_S = UnitState
# Which states may follow each state. Any state may go to FAILED (a start limit, a required unit
# failing, an internal error); setting the current state again only updates the reason.
ALLOWED: dict[UnitState, frozenset[UnitState]] = {
    # started (conditions, dependencies), or repaired by hand while down
    _S.INACTIVE: frozenset({_S.STARTING, _S.SKIPPED, _S.REPAIRING}),
    # healthy or up; stopped; exited (then restart pacing, repair, or the end)
    _S.STARTING: frozenset({_S.RUNNING, _S.STOPPING, _S.BACKOFF, _S.REPAIRING, _S.INACTIVE,
                            _S.SKIPPED}),
    _S.RUNNING: frozenset({_S.STOPPING, _S.BACKOFF, _S.REPAIRING, _S.INACTIVE}),
    _S.STOPPING: frozenset({_S.INACTIVE, _S.BACKOFF, _S.REPAIRING}),
    # the delay ends (start again, or a condition is unmet now), or a stop ends it
    _S.BACKOFF: frozenset({_S.STARTING, _S.SKIPPED, _S.INACTIVE}),
    # `start` clears a failure (systemctl reset-failed + start); `repair` works on it
    _S.FAILED: frozenset({_S.STARTING, _S.SKIPPED, _S.INACTIVE, _S.REPAIRING}),
    _S.SKIPPED: frozenset({_S.STARTING, _S.INACTIVE, _S.REPAIRING}),
    # repaired: start again at once; not repaired: the restart policy applies
    _S.REPAIRING: frozenset({_S.STARTING, _S.BACKOFF, _S.INACTIVE, _S.SKIPPED}),
}


class InvalidTransition(RuntimeError):
    """A state change the table does not allow: a bug in the supervisor, never the user's."""

    def __init__(self, old: UnitState, new: UnitState, unit: str):
        super().__init__(f"{unit}: {old} → {new} is not an allowed transition")


def check_transition(old: UnitState, new: UnitState, unit: str) -> None:
    if new != old and new != UnitState.FAILED and new not in ALLOWED[old]:
        raise InvalidTransition(old, new, unit)
