"""Staging directories: a model is built next to its destination and renamed into place, so
an interrupted run never leaves a half-written model behind."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from llm_supervisor.model_server.sources.types import ModelSourceError


def staging_dir(dest: Path) -> Path:
    """A new empty directory next to ``dest`` to build a model in before it is renamed in."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def clean_stale_staging(dest: str | os.PathLike[str]) -> None:
    """Remove staging/old directories left next to ``dest`` by an interrupted run."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return
    for pattern in (f".{dest.name}.staging-*", f".{dest.name}.old-*"):
        for stale in dest.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def install_dir(staging: Path, dest: Path, *, replace: bool = False) -> None:
    """Move the finished ``staging`` directory to ``dest``.

    An empty ``dest`` (for example a mount point) is filled file by file; an existing model is
    only swapped out when ``replace`` is true (rename aside, rename in, delete the old one).
    """
    if dest.is_dir() and any(dest.iterdir()):
        if not replace:
            raise ModelSourceError(f"{dest} is not empty; refusing to overwrite it")
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
        os.rename(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
        return
    if dest.is_dir():
        try:
            dest.rmdir()
        except OSError:  # a mount point: move the contents instead (across file systems:
            for child in staging.iterdir():  # a container's bind mount is another device)
                shutil.move(str(child), str(dest / child.name))
            shutil.rmtree(staging, ignore_errors=True)
            return
    os.rename(staging, dest)
