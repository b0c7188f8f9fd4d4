"""Readability by mode bits, and the fix (what ``fix_model_service.sh`` did with sudo).

``os.access`` answers yes to root for a ``chmod 000`` file, yet a model server running as root
without ``CAP_DAC_OVERRIDE`` (a container, ``setpriv``, a hardened unit) or as another user
cannot read it. So readability is judged from the mode bits as the kernel applies them to an
unprivileged process with our uid and groups.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

FILE_MODE_BITS = 0o644  # added to a model file (never removed): owner rw, everyone r
DIR_MODE_BITS = 0o755


def _identity() -> tuple[int, set[int]]:
    return os.geteuid(), {os.getegid(), *os.getgroups()}


def mode_allows(st: os.stat_result, want: int, uid: int | None = None,
                gids: set[int] | None = None) -> bool:
    """Whether the mode bits grant ``want`` (an ``os.R_OK | os.X_OK`` mask) to ``uid``."""
    if uid is None or gids is None:
        uid, gids = _identity()
    if st.st_uid == uid:
        shift = 6
    elif st.st_gid in gids:
        shift = 3
    else:
        shift = 0
    bits = (st.st_mode >> shift) & 0o7
    return bits & want == want


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` (a file, or a directory on the way to one) cannot be read, else None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    want = os.R_OK | os.X_OK if stat.S_ISDIR(st.st_mode) else os.R_OK
    if mode_allows(st, want):
        return None
    uid, _ = _identity()
    return (f"mode {stat.filemode(st.st_mode)} (owner {st.st_uid}:{st.st_gid}) "
            f"does not let uid {uid} read it")


def owner_of(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_uid, st.st_gid


def make_readable(path: Path, owner: tuple[int, int] | None = None) -> str:
    """Add read (and, for directories, search) bits; as root also hand the file to ``owner``
    (the model directory's owner). Returns what was changed, for the report."""
    st = path.stat()
    changes = []
    if owner is not None and os.geteuid() == 0 and (st.st_uid, st.st_gid) != owner:
        os.chown(path, *owner)
        changes.append(f"owner {st.st_uid}:{st.st_gid} -> {owner[0]}:{owner[1]}")
    bits = DIR_MODE_BITS if stat.S_ISDIR(st.st_mode) else FILE_MODE_BITS
    mode = stat.S_IMODE(st.st_mode)
    if mode | bits != mode:
        os.chmod(path, mode | bits)
        changes.append(f"mode {mode:o} -> {mode | bits:o}")
    return ", ".join(changes) or "unchanged"


def adopt(path: Path, owner: tuple[int, int] | None) -> None:
    """Give a freshly written file the mode and owner the model's files should have."""
    os.chmod(path, FILE_MODE_BITS)
    if owner is not None and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.chown(path, *owner)
