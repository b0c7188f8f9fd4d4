"""The memory budget: may a model load now, and which loaded models must make room?

Pure decisions (no I/O), so every rule is testable in isolation:

- a model that fits in what is free loads at once;
- else the least recently used *idle, unpinned* models are stopped, oldest first;
- a model with requests in flight is never stopped while busy: if only busy models could make
  room, the load waits for them to drain (``wait_for``) and they take no new requests meanwhile;
- pinned models are never candidates; a model still loading is the last resort: the decision is
  taken again once it has loaded (and served the requests that waited for it);
- if even stopping every candidate cannot make room, :class:`NoRoom` names who holds the memory.

Sizes are bytes: the estimate from the model's file (:mod:`llm_supervisor.model_server.weights.
estimate`) until the model has been loaded once, then the RSS measured after its load.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
DEFAULT_SHARE = 0.75


@dataclass(frozen=True)
class Resident:
    """A model that holds (or is about to hold) memory."""

    name: str
    bytes: int
    pinned: bool = False
    in_flight: int = 0
    loading: bool = False
    last_used: float = 0.0

    @property
    def evictable(self) -> bool:
        return not self.pinned


@dataclass
class Plan:
    evict: list[str] = field(default_factory=list)  # idle: stop now
    wait_for: list[str] = field(default_factory=list)  # busy: stop once drained
    wait_for_load: list[str] = field(default_factory=list)  # loading: decide again once loaded

    @property
    def ready(self) -> bool:
        return not (self.evict or self.wait_for or self.wait_for_load)


class NoRoom(Exception):
    """Nothing can make room: the message names the need, the budget and the holders."""

    def __init__(self, model: str, need: int, budget: int, holders: list[Resident]):
        self.model, self.need, self.budget, self.holders = model, need, budget, holders
        held = ", ".join(f"{h.name} {mib(h.bytes)}{' (pinned)' if h.pinned else ''}"
                         f"{' (loading)' if h.loading else ''}" for h in holders) or "nothing"
        if need > budget:
            why = f"it alone needs {mib(need)}, more than MODEL_MEMORY_BUDGET={mib(budget)}"
        else:
            why = (f"it needs {mib(need)} of MODEL_MEMORY_BUDGET={mib(budget)} and the memory "
                   f"is held by: {held}")
        super().__init__(f"model {model!r} cannot be loaded: {why}. Raise MODEL_MEMORY_BUDGET, "
                         "unpin or unload a model (llm-supervisorctl models unload NAME)")


def mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def plan(model: str, need: int, budget: int, residents: list[Resident]) -> Plan:
    """What to stop so that ``need`` bytes fit in ``budget`` next to ``residents``."""
    others = [r for r in residents if r.name != model]
    free = budget - sum(r.bytes for r in others)
    if need > budget:
        raise NoRoom(model, need, budget, others)
    result = Plan()
    if need <= free:
        return result
    # Idle before busy before loading, least recently used first.
    for candidate in sorted((r for r in others if r.evictable),
                            key=lambda r: (r.loading, r.in_flight > 0, r.last_used)):
        if candidate.loading:
            result.wait_for_load.append(candidate.name)
        else:
            (result.wait_for if candidate.in_flight else result.evict).append(candidate.name)
        free += candidate.bytes
        if need <= free:
            if result.wait_for_load:  # nothing is stopped until the loading ones are settled
                result.evict, result.wait_for = [], []
            return result
    raise NoRoom(model, need, budget, others)


def parse_budget(text: str, available: int) -> int:
    """``8G``, ``8GiB``, ``512M``, a byte count, or ``60%`` of ``available``; ``0``/empty is
    the default share (75 %) of ``available``."""
    value = text.strip()
    if not value or value == "0":
        return int(available * DEFAULT_SHARE)
    if value.endswith("%"):
        share = float(value[:-1])
        if not 0 < share <= 100:
            raise ValueError(f"MODEL_MEMORY_BUDGET={text!r}: a share must be in (0, 100] %")
        return int(available * share / 100)
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"MODEL_MEMORY_BUDGET={text!r}: expected a size like 8G, 512M, "
                         "or a share like 60%")
    unit = (match.group(2) or "").lower().replace("i", "").replace("b", "") or ""
    return int(float(match.group(1)) * _FACTORS[unit])


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (bytes), else total physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
