"""Reading a failed run's log: only the lines of the last run count."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# The supervisor's note when it spawns a unit (runner: "started (pid N)").
_RUN_START = re.compile(r"^\[llm-supervisord\] started \(")


def last_run(lines: Sequence[str]) -> list[str]:
    """The lines after the supervisor's last ``started (...)`` note (all of them if none)."""
    for index in range(len(lines) - 1, -1, -1):
        if _RUN_START.match(lines[index]):
            return list(lines[index + 1:])
    return list(lines)


def first_match(lines: Iterable[str], patterns: Iterable[re.Pattern[str]]) -> str | None:
    """The first line any of ``patterns`` finds, trimmed for a status line."""
    compiled = list(patterns)
    for line in lines:
        if any(p.search(line) for p in compiled):
            return line.strip()[-300:]
    return None


def killed_by(lines: Sequence[str]) -> str | None:
    """``SIGILL`` when the supervisor's exit note says the run was killed by a signal."""
    for line in reversed(lines):
        match = re.search(r"killed by (SIG[A-Z0-9]+)", line)
        if match and line.startswith("[llm-supervisord]"):
            return match.group(1)
    return None
