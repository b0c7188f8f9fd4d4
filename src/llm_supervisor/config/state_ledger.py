"""What the daemon created in its state directory: the record ``stop --purge`` trusts.

``STATE_DIR`` may be a directory that already holds someone's files (``STATE_DIR=$HOME``, with
its own ``logs/`` or ``models/``). Before the daemon creates anything there, every entry it may
create that does not exist yet is written to ``.llm-supervisor-created.json``; an entry that was
already there is never recorded, so a purge never removes it (an install from before this
record keeps everything, and the purge says so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llm_supervisor.core.fsutil import atomic_write_json

LEDGER_NAME = ".llm-supervisor-created.json"
# The entries the daemon may create in the state dir, with what they hold (for the purge list).
STATE_DIR_ENTRIES = {
    "models": "model cache and converted models",
    "home": "the units' home (Hugging Face hub cache)",
    "repair-store": "repair store (verified model files)",
    "repair-budget.json": "repair budget",
    "desktop": "test desktop files (VNC password, X authority)",
    "desktop-container": "the desktop container's VNC password",
    "gateway": "gateway configuration",
    "logs": "unit logs",
    "daemon.log": "daemon log (and its rotated files)",
}


def created_entries(state_dir: Path) -> set[str]:
    try:
        data = json.loads((state_dir / LEDGER_NAME).read_text())
    except (OSError, ValueError):
        return set()
    names = data.get("created", []) if isinstance(data, dict) else []
    return {name for name in names if name in STATE_DIR_ENTRIES}


def record_new_entries(state_dir: Path) -> set[str]:
    """Called before the daemon (or ``start``) creates anything: add every entry that does not
    exist yet. Returns the record."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    recorded = created_entries(state_dir)
    missing = {name for name in STATE_DIR_ENTRIES
               if not os.path.lexists(state_dir / name)} - recorded
    if missing or not (state_dir / LEDGER_NAME).exists():
        recorded |= missing
        atomic_write_json(state_dir / LEDGER_NAME, {"created": sorted(recorded)}, mode=0o600)
    return recorded


def forget(state_dir: Path, names: set[str]) -> None:
    """After a purge removed ``names``: they are no longer there to be ours."""
    remaining = created_entries(state_dir) - names
    atomic_write_json(state_dir / LEDGER_NAME, {"created": sorted(remaining)}, mode=0o600)
