"""An append-only log file, rotated by size, whose writes never raise.

Shared by the unit logs (:mod:`.logs`) and ``daemon.log`` (:mod:`llm_supervisor.core.logging_setup`).
When the disk is full (ENOSPC) or the file cannot be opened, the bytes are dropped and counted
instead of raising into the caller: the pump that drains a unit's pipe must keep draining, or the
unit blocks on a full pipe. Every later write tries again; the first one that succeeds is
preceded by a note saying how much was dropped (``resume_note``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def rotate_chain(path: Path, backups: int) -> None:
    """``path.N-1`` → ``path.N`` … ``path`` → ``path.1``; the oldest falls off the end."""
    for index in range(backups, 0, -1):
        source = path.with_name(f"{path.name}.{index - 1}") if index > 1 else path
        if source.exists():
            os.replace(source, path.with_name(f"{path.name}.{index}"))
    if backups <= 0 and path.exists():
        path.unlink()


LOG_FILE_MODE = 0o640
LOG_DIR_MODE = 0o750


class RotatingFile:
    """``write(bytes)`` appends; past ``max_bytes`` the file is rotated (``backups`` kept).

    ``on_dropping(error)`` is called once when writes start failing (not for every failed write);
    ``resume_note(dropped_bytes, error)`` gives the bytes written ahead of the first successful
    write afterwards; ``on_open(file)`` runs after every (re)open.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int,
                 on_dropping: Callable[[str], None] | None = None,
                 resume_note: Callable[[int, str], bytes] | None = None,
                 on_open: Callable[[int], None] | None = None):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped_bytes = 0  # in total, for metrics and tests
        self._episode_dropped = 0  # since the current failure began
        self._episode_error = ""
        self._mid_line = False
        self._on_dropping = on_dropping
        self._resume_note = resume_note
        self._on_open = on_open
        self._file = self._open()

    @property
    def dropping(self) -> bool:
        """True while writes fail (the next successful write ends it)."""
        return bool(self._episode_error)

    def _open(self):  # type: ignore[no-untyped-def]
        """Logs are the daemon's and its group's only (0640 in a 0750 directory it makes): unit
        output may hold anything, and the state dir is traversable (0711) by the unit user."""
        try:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=LOG_DIR_MODE)
                os.chmod(self.path.parent, LOG_DIR_MODE)  # whatever the umask
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                         | os.O_NOFOLLOW, LOG_FILE_MODE)
            if os.fstat(fd).st_mode & 0o7777 != LOG_FILE_MODE:
                with contextlib.suppress(OSError):
                    os.fchmod(fd, LOG_FILE_MODE)  # one made 0644 by an older version
            handle = open(fd, "ab", buffering=0)  # noqa: SIM115 - lives as long as we do
        except OSError as exc:
            self._failed(exc)
            return None
        if self._on_open is not None:
            self._on_open(handle.fileno())
        return handle

    def _failed(self, exc: OSError) -> None:
        first = not self._episode_error
        self._episode_error = exc.strerror or str(exc)
        if first and self._on_dropping is not None:
            self._on_dropping(f"{self.path}: {self._episode_error}")

    def _write_all(self, data: bytes) -> int:
        """Write ``data``; returns how many bytes made it (the rest failed with an OSError)."""
        assert self._file is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                count = self._file.write(view[written:])
                if not count:
                    raise OSError(f"short write to {self.path}")
                written += count
        except OSError as exc:
            self._failed(exc)
        finally:
            if written:
                self._mid_line = view[written - 1] != 0x0A
        return written

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._file is None:
            self._file = self._open()
            if self._file is None:
                self._drop(len(data))
                return
        if self.dropping and not self._write_resume_note():
            self._drop(len(data))
            return
        written = self._write_all(data)
        if written < len(data):
            self._drop(len(data) - written)
            return
        if self.max_bytes > 0 and self._size() >= self.max_bytes:
            self.rotate()

    def _write_resume_note(self) -> bool:
        """Ahead of the first write after a failure: say what was lost. False: still failing."""
        note = b""
        if self._resume_note is not None:
            note = self._resume_note(self._episode_dropped, self._episode_error)
            if self._mid_line:
                note = b"\n" + note
        if note and self._write_all(note) < len(note):
            return False
        self._episode_error = ""
        self._episode_dropped = 0
        return True

    def _drop(self, count: int) -> None:
        self.dropped_bytes += count
        self._episode_dropped += count

    def _size(self) -> int:
        assert self._file is not None
        try:
            return self._file.tell()
        except OSError:
            return 0

    def rotate(self) -> None:
        self._close_file()
        with contextlib.suppress(OSError):  # then keep appending to the current file
            rotate_chain(self.path, self.backups)
        self._file = self._open()

    def reopen(self) -> None:
        """For external rotators (logrotate): the file at ``path`` may be a new one now."""
        self._close_file()
        self._file = self._open()

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_file()
