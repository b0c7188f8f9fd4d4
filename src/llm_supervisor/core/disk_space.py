"""Free space, asked before a big write (a download, a repair, an image build): one sentence
that says what is missing instead of a half-written file and ENOSPC."""

from __future__ import annotations

import os
from pathlib import Path


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes for an unprivileged writer on ``path``'s file system (nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = os.statvfs(probe)
    return usage.f_bavail * usage.f_frsize


def human(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def shortfall(path: str | os.PathLike[str], needed: int, what: str) -> str | None:
    """One sentence when ``needed`` bytes do not fit at ``path`` (None when they do)."""
    free = free_bytes(path)
    if free >= needed:
        return None
    return (f"{what} needs {human(needed)} at {path} but only {human(free)} is free: free "
            f"{human(needed - free)} there (or point it at a larger disk)")
