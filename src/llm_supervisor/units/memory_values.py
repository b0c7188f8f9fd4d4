"""``MemoryMax=`` / ``MemoryHigh=`` values, as systemd reads them: bytes with an optional
K/M/G/T suffix (base 1024), a percentage of the machine's physical memory, or ``infinity``."""

from __future__ import annotations

import os
import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_LIMIT = 1 << 20  # below a MiB no program starts; a typo such as MemoryMax=512 (bytes)


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(text: str) -> int | None:
    """Bytes, or None for ``infinity`` (no limit)."""
    value = text.strip()
    if value.lower() == "infinity":
        return None
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            raise ValueError(f"invalid percentage {text!r} (e.g. 50%)") from None
        if not 0 < percent <= 100:
            raise ValueError(f"percentage {text!r} must be above 0% and at most 100%")
        return int(physical_memory() * percent / 100)
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"invalid memory size {text!r} (examples: 512M, 2G, 50%, infinity)")
    size = int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    if size < MIN_LIMIT:
        raise ValueError(f"memory size {text!r} is below 1M; did you mean {value}M?")
    return size
