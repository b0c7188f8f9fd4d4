"""File operations below a directory another user owns that never follow a symbolic link: the
one module for them (the repair below the model directory, the root daemon handing
``STATE_DIR/{desktop,gateway,home}`` to the unit user, secrets written there).

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


# --------------------------------------------------------------------- directories another user owns
def open_child_dir(parent_fd: int, name: str, mode: int = 0o700, *, create: bool = True) -> int:
    """A descriptor of the directory ``name`` in ``parent_fd``, made when missing; a symbolic
    link (or anything else) found there is removed first — the link, never its target."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        if not create:
            raise
    else:
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
    with suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=parent_fd)
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:  # swapped for a link since the check
        raise UnsafePath(exc.errno or errno.ELOOP, f"cannot open {name} safely: {exc}") from exc


def open_dir_path(path: Path, mode: int = 0o700) -> int:
    """A descriptor of ``path`` whose parent the caller trusts (the daemon's own state dir);
    its last component is reached with :func:`open_child_dir`. The parent is opened with
    ``O_PATH``: a unit user may pass through the state dir (0711) without reading it."""
    parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | _CLOEXEC)
    try:
        return open_child_dir(parent, path.name, mode)
    finally:
        os.close(parent)


def own_tree(dir_fd: int, owner: tuple[int, int]) -> int:
    """Hand the directory behind ``dir_fd`` and everything below it to ``owner``, by descriptor
    only: subdirectories are opened with ``O_NOFOLLOW`` relative to their parent's descriptor and
    every other entry (a link included: the link itself) is changed with ``dir_fd=`` and
    ``follow_symlinks=False``. A directory swapped for a link mid-walk is skipped, so nothing
    outside the tree is ever reached. Returns how many entries changed owner."""
    changed = 0
    st = os.fstat(dir_fd)
    if (st.st_uid, st.st_gid) != owner:
        os.fchown(dir_fd, *owner)
        changed += 1
    with os.scandir(dir_fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # now a link, or gone: never followed
            try:
                changed += own_tree(child, owner)
            finally:
                os.close(child)
        elif (st.st_uid, st.st_gid) != owner:
            with suppress(FileNotFoundError):
                os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
                changed += 1
    return changed


def read_file_at(dir_fd: int, name: str, limit: int = 1 << 20) -> bytes | None:
    """The content of the regular file ``name`` in ``dir_fd``, or None when it is missing, a
    link or not a regular file (never a link's target)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_file_at(dir_fd: int, name: str, data: bytes, mode: int = 0o600,
                  owner: tuple[int, int] | None = None) -> None:
    """Replace ``name`` in ``dir_fd`` atomically with a new file of ``mode`` (and ``owner``, as
    root): a temporary file made with ``O_EXCL`` and renamed over whatever was there, a planted
    link included (the rename replaces the link itself)."""
    tmp = f".{name}.{os.getpid()}.{secrets_token()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, mode,
                 dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, *owner)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def chmod_at(dir_fd: int, name: str, mode: int) -> bool:
    """``chmod`` the entry ``name`` in ``dir_fd`` unless it is a link; False when it is one or
    is missing."""
    try:
        with no_follow_handle(dir_fd, name) as (fd, st):
            if stat.S_ISLNK(st.st_mode):
                return False
            chmod_handle(fd, mode)
            return True
    except FileNotFoundError:
        return False


def secrets_token() -> str:
    return os.urandom(6).hex()
