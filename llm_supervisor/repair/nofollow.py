"""File operations below the model directory that never follow a symbolic link.

The model directory is writable by whoever runs the model service (a container running as root
with it mounted read-write), while the repair runs in the supervisor, often as root. A symlink
planted there (``weights -> /etc/cron.d/x``, ``sub -> /``) must never make the repair write,
chmod or chown anything outside. So every change below the model directory goes through a
directory descriptor reached one component at a time with ``O_NOFOLLOW``; names are then used
only relative to that descriptor (``dir_fd=``), and modes and owners are changed on a
descriptor of the file itself, never on a path that could be swapped for a link.

The model directory's own path is the daemon's setting (``MODEL_PATH``) and may itself be a
link; it is opened once, following it, and everything below is reached from that descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | _CLOEXEC
DIR_MODE = 0o755


class UnsafePath(OSError):
    """A path below the model directory that cannot be reached without following a link, or
    that would lead outside it."""


def open_root(root: Path) -> int:
    """A descriptor of the model directory itself (its configured path may be a link)."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)


def fd_path(fd: int) -> str:
    """The ``/proc`` name of an open descriptor: ``chmod``/``chown`` on it reach exactly that
    inode (how the C library implements ``fchmodat(AT_SYMLINK_NOFOLLOW)``)."""
    return f"/proc/self/fd/{fd}"


def _resolved(fd: int) -> str | None:
    try:
        return os.readlink(fd_path(fd))
    except OSError:
        return None  # no /proc: the O_NOFOLLOW walk alone vouches for the descriptor


def check_inside(fd: int, root: Path) -> None:
    """Raise :class:`UnsafePath` unless the directory ``fd`` lies at or below ``root`` once
    both are resolved (defence in depth behind the ``O_NOFOLLOW`` walk)."""
    where = _resolved(fd)
    if where is None:
        return
    top = os.path.realpath(root)
    if where != top and not where.startswith(top.rstrip("/") + "/"):
        raise UnsafePath(errno.EXDEV, f"{where} is outside the model directory {top}")


@contextmanager
def parent_dir(root_fd: int, root: Path, rel: str, *, create: bool = False,
               replace_links: bool = False, owner: tuple[int, int] | None = None
               ) -> Iterator[tuple[int, str]]:
    """Yield ``(dir_fd, name)`` for the directory that holds ``rel`` (a validated relative POSIX
    path) and its last component.

    ``create`` makes missing directories (mode 0755, handed to ``owner`` as root);
    ``replace_links`` removes a symlink found where a directory should be (the link, never its
    target) and makes a real directory instead. Otherwise a link, or a file where a directory
    should be, raises :class:`UnsafePath` / ``NotADirectoryError``.
    """
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for index, part in enumerate(parts[:-1]):
            here = "/".join(parts[: index + 1])
            made = False
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, DIR_MODE, dir_fd=fd)
                made = True
            else:
                if stat.S_ISLNK(st.st_mode):
                    if not replace_links:
                        raise UnsafePath(errno.ELOOP, f"{here} is a symbolic link")
                    os.unlink(part, dir_fd=fd)  # the link itself; its target is not touched
                    os.mkdir(part, DIR_MODE, dir_fd=fd)
                    made = True
                elif not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, f"{here} is a file where a directory "
                                             "should be; move it away")
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:  # swapped for a link since the check
                raise UnsafePath(exc.errno or errno.ELOOP, f"cannot open {here} safely: {exc}"
                                 ) from exc
            os.close(fd)
            fd = child
            if made:
                os.fchmod(fd, DIR_MODE)
                chown_fd(fd, owner)
        check_inside(fd, root)
        yield fd, parts[-1]
    finally:
        os.close(fd)


def chown_fd(fd: int, owner: tuple[int, int] | None) -> None:
    """As root, hand the open file to ``owner`` (errors ignored: a mode fix still helps)."""
    if owner is None or os.geteuid() != 0:
        return
    with suppress(OSError):
        os.fchown(fd, *owner)


@contextmanager
def no_follow_handle(dir_fd: int, name: str) -> Iterator[tuple[int, os.stat_result]]:
    """An ``O_PATH`` descriptor of ``name`` in ``dir_fd`` itself (a link is opened as the link,
    not followed) and its status; for changing modes and owners safely."""
    fd = os.open(name, PATH_FLAGS, dir_fd=dir_fd)
    try:
        yield fd, os.fstat(fd)
    finally:
        os.close(fd)


def chmod_handle(fd: int, mode: int) -> None:
    """``chmod`` the inode behind an ``O_PATH`` descriptor (which ``fchmod`` refuses)."""
    os.chmod(fd_path(fd), mode)


def chown_handle(fd: int, owner: tuple[int, int]) -> None:
    """``chown`` the inode behind an ``O_PATH`` descriptor (never a link's target)."""
    os.chown(fd_path(fd), *owner)
