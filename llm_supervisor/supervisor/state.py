"""Unit states and health values (strings on the wire, enums in code)."""

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
