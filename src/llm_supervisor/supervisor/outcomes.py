"""What a diagnosis and a repair return (values exchanged through the `diagnose_failure` and
`repair_unit` hooks). Plugins import them from :mod:`llm_supervisor.plugins.types`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Diagnosis:
    """What a plugin recognised in a failure, e.g. ``kind="weights_load_failed"``."""

    kind: str
    summary: str
    plugin: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RepairResult:
    ok: bool
    message: str
    # True when further attempts are pointless (budget spent, source broken): the unit fails.
    give_up: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class Progress(Protocol):
    """What ``repair_unit`` gets to report progress: ``progress(0.5, "fetching weights")``."""

    def __call__(self, fraction: float, message: str = "") -> None: ...
