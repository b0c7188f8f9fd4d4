"""systemd-style time spans ("1", "500ms", "2min 30s", "infinity") as float seconds."""

from __future__ import annotations

import math
import re

_UNITS = {
    "us": 1e-6, "ms": 1e-3, "": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}
# Beyond this a span is a typo; it would also overflow the C timeouts some libraries pass it to.
MAX_SECONDS = 365 * 24 * 3600.0
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_duration(text: str) -> float:
    """Return seconds; ``infinity`` is ``math.inf``. Raise ValueError with a readable message."""
    value = text.strip().lower()
    if value == "infinity":
        return math.inf
    if not value:
        raise ValueError("empty time span")
    total, pos = 0.0, 0
    while pos < len(value):
        match = _PART.match(value, pos)
        if not match or match.group(2) not in _UNITS:
            raise ValueError(f"invalid time span {text!r} (examples: 5, 500ms, 2min, infinity)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
        while pos < len(value) and value[pos] == " ":
            pos += 1
    if total > MAX_SECONDS:
        raise ValueError(f"time span {text[:40]!r} is longer than a year (use infinity for no "
                         "limit)")
    return total
