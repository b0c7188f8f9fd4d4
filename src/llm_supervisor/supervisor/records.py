"""``instances.json``: what each unit was running, so a restarted daemon can find it.

One JSON object, unit name → the runtime's record (``Instance.record()``). Written atomically
and durably (:mod:`llm_supervisor.core.fsutil`). A file that cannot be used (not JSON, or JSON that is
not an object) is logged, set aside as ``instances.json.corrupt-<time>`` for a human to look at,
and the daemon carries on as if there were no records: leftovers of the previous daemon are then
not cleaned up, which is better than not starting at all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import structlog

from llm_supervisor.core.fsutil import atomic_write_json

log = structlog.get_logger("llm_supervisor.records")

RECORDS_NAME = "instances.json"


def set_aside(path: Path, why: str) -> Path | None:
    """Rename an unusable ``path`` to ``<name>.corrupt-<utc time>``; None if that failed too."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        log.warning("records_unusable", path=str(path), reason=why,
                    error=f"could not set it aside: {exc}",
                    hint="remove the file by hand; leftovers of the previous daemon are not "
                         "cleaned up until then")
        return None
    log.warning("records_unusable", path=str(path), reason=why, moved_to=str(aside),
                hint="leftovers of the previous daemon were not cleaned up: check for stray "
                     "unit processes (llm-supervisorctl status, ps)")
    return aside


def load_records(path: Path) -> dict[str, dict[str, Any]]:
    """The records of the previous daemon; ``{}`` when there are none or they are unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("records_unreadable", path=str(path), error=str(exc))
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError
        set_aside(path, f"not JSON: {exc}")
        return {}
    if not isinstance(value, dict):
        set_aside(path, f"JSON {type(value).__name__}, expected an object")
        return {}
    records = {}
    for name, record in value.items():
        if isinstance(record, dict):
            records[name] = record
        else:
            log.warning("record_ignored", path=str(path), unit=name,
                        reason=f"JSON {type(record).__name__}, expected an object")
    return records


def save_records(path: Path, records: dict[str, dict[str, Any]]) -> None:
    """Replace the records, atomically and durably; private to the daemon's user."""
    atomic_write_json(path, records, mode=0o600)
