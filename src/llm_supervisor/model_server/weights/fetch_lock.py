"""One fetch per model at a time, partial downloads kept for the next try, wrong files set aside.

- :func:`fetch_lock`: an exclusive ``flock`` on ``.NAME.fetch.lock`` next to the model
  directory, so two fetches of one model (two replicas starting, the model server and a repair)
  never run at once: the second waits, then finds the model in place.
- :func:`download_dir`: the staging directory of a download is ``.NAME.download`` (not a fresh
  random one), so an interrupted download resumes there: finished files are kept, and the hub
  client continues its ``.incomplete`` file.
- :func:`quarantine`: a file whose hash is wrong is moved to ``.NAME.quarantine/`` (kept for a
  look, never loaded) before it is fetched again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _sibling(dest: Path, suffix: str) -> Path:
    return dest.parent / f".{dest.name}.{suffix}"


@contextlib.contextmanager
def fetch_lock(dest: Path, log: Any = None) -> Iterator[None]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_sibling(dest, "fetch.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log:
                log.info("fetch_waiting", model_path=str(dest),
                         reason="another fetch of this model is running")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def download_dir(dest: Path) -> Path:
    staging = _sibling(dest, "download")
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def quarantine(staging: Path, name: str, dest: Path) -> Path:
    """Move ``staging/name`` aside (and forget the hub client's record of it)."""
    folder = _sibling(dest, "quarantine")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name.replace('/', '_')}.{time.time_ns()}"
    os.replace(staging / name, target)
    for record in (staging / ".cache" / "huggingface" / "download").glob(f"{name}.*"):
        record.unlink(missing_ok=True)
    return target
