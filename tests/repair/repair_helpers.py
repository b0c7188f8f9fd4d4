"""Helpers for the model-repair tests: the damage we inflict, a real model unit, a hub repo.

Imported by the test modules (``from repair_helpers import ...``); not a conftest, so the
supervisor tests' ``from conftest import ...`` keeps meaning theirs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from llm_supervisor.model_server.weights.manifest import MANIFEST_NAME
from llm_supervisor.repair.context import RepairContext
from llm_supervisor.units.model import Unit

WEIGHTS = "model.safetensors"


def truncate(model: Path) -> str:
    w = model / WEIGHTS
    with open(w, "r+b") as fh:
        fh.truncate(w.stat().st_size // 2)
    return WEIGHTS


def delete_weights(model: Path) -> str:
    (model / WEIGHTS).unlink()
    return WEIGHTS


def flip_middle(model: Path) -> str:
    """Random bytes inside tensor data: loads silently, only a checksum catches it."""
    w = model / WEIGHTS
    size = w.stat().st_size
    with open(w, "r+b") as fh:
        fh.seek(size // 2)
        chunk = fh.read(64)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    return WEIGHTS


def chmod_000(model: Path) -> str:
    (model / WEIGHTS).chmod(0)
    return WEIGHTS


def delete_config(model: Path) -> str:
    (model / "config.json").unlink()
    return "config.json"


DAMAGE: dict[str, Callable[[Path], str]] = {
    "truncated": truncate,
    "deleted": delete_weights,
    "bytes-flipped": flip_middle,
    "chmod-000": chmod_000,
    "config-deleted": delete_config,
}


def model_unit(exec_start: list[str] | None = None, environment: dict[str, str] | None = None,
               name: str = "model-service.service") -> Unit:
    """A real :class:`Unit` running the model server (as the shipped unit does)."""
    return Unit(name=name, path=Path(f"/units/{name}"), kind="service",
                exec_start=exec_start or [sys.executable, "-m", "llm_supervisor.model_server"],
                environment=environment or {})


def context(model: Path, **env: str) -> RepairContext:
    """A repair context for ``model`` with a clean hub environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODEL_"))}
    ctx = RepairContext.for_unit(model_unit(), {**base, "MODEL_PATH": str(model), **env})
    assert ctx is not None
    return ctx


def hub_copy(src: Path, dest: Path) -> Path:
    """The files of ``src`` as a hub repo would hold them (no manifest of ours)."""
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != MANIFEST_NAME:
            shutil.copy(f, dest / f.name)
    return dest


def noop_progress(fraction: float, message: str = "") -> None:
    pass
