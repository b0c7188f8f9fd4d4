"""Recognise a damaged model from how the model service ended.

Evidence, strongest first:

1. the model server's JSON ``weights_load_failed`` event (names the file and the error);
2. its distinct exit code :data:`~llm_supervisor.core.exit_codes.WEIGHTS_LOAD_FAILED` (65);
3. the classic signatures of other servers and older versions: ``Unable to load weights``,
   safetensors header errors, ``No such file or directory`` for a weight file, ``Permission
   denied`` under the model directory (see FACTS.md for the measured messages);
4. for any other abnormal end (SIGKILL, OOM, a crash before loading), a stat-only look at the
   model directory against its manifest: no file is read, so it is safe on the event loop.

Only the lines of the *last* run are considered: the unit's log tail spans restarts, and an
earlier failure that was already repaired must not trigger a second repair.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.core.exit_codes import WEIGHTS_LOAD_FAILED
from llm_supervisor.supervisor.outcomes import Diagnosis

PLUGIN_NAME = "model_repair"
KINDS = frozenset({"weights_load_failed", "weights_signature", "model_files_damaged"})
"""Diagnosis kinds this plugin produces (and therefore repairs)."""

_RUN_START = re.compile(r"^\[llm-supervisord\] (started \(pid|re-adopted )")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".model",
                    ".tiktoken", ".txt", ".jinja")


@dataclass(frozen=True)
class _Signature:
    name: str
    pattern: re.Pattern[str]
    needs_model_path: bool = False  # the captured path must point into the model (dir or file)


SIGNATURES: tuple[_Signature, ...] = (
    _Signature("unable to load weights", re.compile(r"Unable to load weights")),
    _Signature("safetensors header error",
               re.compile(r"Error while deserializing header|SafetensorError|HeaderTooSmall"
                          r"|HeaderTooLarge|MetadataIncompleteBuffer")),
    _Signature("weights file missing",
               re.compile(r"no file named \S+(?:, or \S+)? found in directory")),
    _Signature("file missing", re.compile(r"No such file or directory: '([^']+)'"),
               needs_model_path=True),
    _Signature("permission denied", re.compile(r"Permission denied: '([^']+)'"),
               needs_model_path=True),
)


@dataclass(frozen=True)
class Evidence:
    """What was found in the log tail."""

    source: str  # "event" | "signature"
    summary: str
    line: str
    details: dict[str, Any] = field(default_factory=dict)


def last_run(lines: Sequence[str]) -> list[str]:
    """The lines after the supervisor's last ``started (pid ...)`` note (all of them if none)."""
    for index in range(len(lines) - 1, -1, -1):
        if _RUN_START.match(lines[index]):
            return list(lines[index + 1:])
    return list(lines)


def _is_model_path(path: str, model_dir: Path) -> bool:
    p = Path(path)
    try:
        p.resolve().relative_to(model_dir.resolve())
        return True
    except ValueError:
        return p.name.endswith(_WEIGHT_SUFFIXES) and str(model_dir) in path


def _event(line: str) -> dict[str, Any] | None:
    if "weights_load_failed" not in line:
        return None
    start = line.find("{")
    if start >= 0:
        try:
            data = json.loads(line[start:])
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("event") == "weights_load_failed":
            return data
    return {"event": "weights_load_failed"}  # console-rendered: no fields, still decisive


def find_evidence(lines: Sequence[str], model_dir: Path) -> Evidence | None:
    """The strongest evidence of damaged model files in ``lines`` (one run's output)."""
    for line in reversed(lines):
        event = _event(line)
        if event is not None:
            file = str(event.get("file") or "")
            error = str(event.get("error_type") or "") + (
                f": {event['error']}" if event.get("error") else "")
            summary = f"weights failed to load: {Path(file).name or 'model'}"
            if error:
                summary += f" ({error[:160]})"
            details = {k: event[k] for k in ("file", "error_type", "error", "problems",
                                             "library_error", "model_path") if event.get(k)}
            return Evidence("event", summary, line, details)
    for line in reversed(lines):
        for sig in SIGNATURES:
            match = sig.pattern.search(line)
            if match is None:
                continue
            if sig.needs_model_path and not _is_model_path(match.group(1), model_dir):
                continue
            details = {"signature": sig.name}
            if match.groups():
                details["file"] = match.group(1)
            return Evidence("signature", f"log shows {sig.name}: {line.strip()[:200]}", line,
                            details)
    return None


def diagnose(
    model_dir: Path,
    exit_code: int | None,
    log_tail: Sequence[str],
    quick_check: Callable[[], list[str]] | None = None,
) -> Diagnosis | None:
    """A :class:`Diagnosis` when the model's files look damaged, else None.

    ``quick_check`` returns human-readable problems found without reading file contents; it is
    consulted only when the log and the exit code say nothing.
    """
    run = last_run(log_tail)
    evidence = find_evidence(run, model_dir)
    base = {"model_dir": str(model_dir), "exit_code": exit_code}
    if evidence is not None and evidence.source == "event":
        return Diagnosis("weights_load_failed", evidence.summary, PLUGIN_NAME,
                         {**base, **evidence.details, "evidence": evidence.line[-500:]})
    if exit_code == WEIGHTS_LOAD_FAILED:
        return Diagnosis("weights_load_failed",
                         f"model server exited {WEIGHTS_LOAD_FAILED}: weights could not be loaded",
                         PLUGIN_NAME, base)
    if evidence is not None:
        return Diagnosis("weights_signature", evidence.summary, PLUGIN_NAME,
                         {**base, **evidence.details, "evidence": evidence.line[-500:]})
    if quick_check is not None:
        problems = quick_check()
        if problems:
            return Diagnosis("model_files_damaged", f"model files damaged: {problems[0]}",
                             PLUGIN_NAME, {**base, "problems": problems})
    return None
