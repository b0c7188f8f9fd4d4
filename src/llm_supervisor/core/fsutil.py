"""Atomic, durable file writes: the one helper for "replace this file, all or nothing".

A reader sees either the old content or the new, never a half-written file, and after the call
returns the new content survives a power cut: the data is fsync'ed before the rename, and the
directory after it (the rename itself lives in the directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename/creation in ``directory`` durable (some file systems refuse: ignored)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644,
                       tmp_dir: str | os.PathLike[str] | None = None) -> None:
    """Replace ``path`` with ``data``: temporary file in the same directory, fsync, rename,
    fsync of the directory. ``mode`` is set before the data is written (0o600 for secrets).
    ``tmp_dir`` (same filesystem) keeps the temporary file out of a directory someone watches."""
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=tmp_dir if tmp_dir is not None else target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_directory(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644,
                      encoding: str = "utf-8", tmp_dir: str | os.PathLike[str] | None = None
                      ) -> None:
    atomic_write_bytes(path, text.encode(encoding), mode, tmp_dir)


def atomic_write_json(path: str | os.PathLike[str], value: Any, mode: int = 0o644,
                      indent: int | None = None) -> None:
    """Serialise first (a value that cannot be written leaves the old file untouched)."""
    atomic_write_text(path, json.dumps(value, indent=indent) + "\n", mode)
