"""Readability by mode bits, and the fix (what ``fix_model_service.sh`` did with sudo).

``os.access`` answers yes to root for a ``chmod 000`` file, yet a model server running as root
without ``CAP_DAC_OVERRIDE`` (a container, ``setpriv``, a hardened unit) or as another user
cannot read it. So readability is judged from the mode bits as the kernel applies them to an
unprivileged process with our uid and groups.

Nothing here follows a symbolic link below the model directory: a link is content damage
(reported and replaced by :mod:`.verify` and :mod:`.fetch`), never a mode to fix, and changes go
through :mod:`.nofollow` descriptors, so no chmod or chown can land outside the directory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from llm_supervisor.core import nofollow

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


def unreadable_reason(path: Path, *, follow_symlinks: bool = False) -> str | None:
    """Why ``path`` (a file, or a directory on the way to one) cannot be read, else None.

    A symbolic link is not followed (None: a link is content damage, not a mode problem) unless
    ``follow_symlinks`` is set, for the model directory's own configured path."""
    try:
        st = path.stat() if follow_symlinks else path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return None
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


def make_readable(root: Path, rel: str, owner: tuple[int, int] | None = None) -> str:
    """Add read (and, for directories, search) bits to ``rel`` below the model directory
    ``root`` (``"."`` for the directory itself); as root also hand it to ``owner`` (the model
    directory's owner). Returns what was changed, for the report.

    A symbolic link anywhere on the way raises :class:`~.nofollow.UnsafePath`: it is never
    followed, so nothing outside ``root`` changes."""
    root_fd = nofollow.open_root(root)
    try:
        if rel == ".":
            with nofollow.no_follow_handle(root_fd, ".") as (fd, st):
                return _make_readable(fd, st, owner)
        with nofollow.parent_dir(root_fd, root, rel) as (dir_fd, name), \
                nofollow.no_follow_handle(dir_fd, name) as (fd, st):
            if stat.S_ISLNK(st.st_mode):
                raise nofollow.UnsafePath(errno.ELOOP, f"{rel} is a symbolic link; it is replaced, "
                                              "never followed")
            return _make_readable(fd, st, owner)
    finally:
        os.close(root_fd)


def _make_readable(fd: int, st: os.stat_result, owner: tuple[int, int] | None) -> str:
    changes = []
    if owner is not None and os.geteuid() == 0 and (st.st_uid, st.st_gid) != owner:
        nofollow.chown_handle(fd, owner)
        changes.append(f"owner {st.st_uid}:{st.st_gid} -> {owner[0]}:{owner[1]}")
    bits = DIR_MODE_BITS if stat.S_ISDIR(st.st_mode) else FILE_MODE_BITS
    mode = stat.S_IMODE(st.st_mode)
    if mode | bits != mode:
        nofollow.chmod_handle(fd, mode | bits)
        changes.append(f"mode {mode:o} -> {mode | bits:o}")
    return ", ".join(changes) or "unchanged"


def adopt_fd(fd: int, owner: tuple[int, int] | None) -> None:
    """Give a freshly written file (an open descriptor) the mode and owner the model's files
    should have."""
    os.fchmod(fd, FILE_MODE_BITS)
    nofollow.chown_fd(fd, owner)
