"""Per-unit output: a size-rotated log file, an in-memory tail, and live followers.

Rotation is by size (``LLM_SUPERVISOR_LOG_MAX_BYTES``, ``LLM_SUPERVISOR_LOG_BACKUPS``);
:meth:`UnitLog.reopen` reopens the file for external rotators (``llm-supervisorctl reopen-logs``).
Memory is bounded: lines longer than :data:`MAX_LINE_CHARS` are split, the tail keeps
:data:`TAIL_LINES`. Writing never raises: on a full disk output is dropped from the file (counted,
one ``unit_log_write_failed`` warning) and the in-memory tail keeps it (see :mod:`.rotating_file`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import stat
from collections import deque
from collections.abc import AsyncGenerator
from pathlib import Path

import structlog

from llm_supervisor.core.rotating_file import RotatingFile

TAIL_LINES = 1000
TAIL_MAX_CHARS = 1024 * 1024
"""The in-memory tail holds at most this much text (and at most :data:`TAIL_LINES` lines)."""
FOLLOWER_MAX_CHARS = 4 * 1024 * 1024
"""A ``logs -f`` reader that falls this far behind misses lines rather than growing memory."""
MAX_LINE_CHARS = 64 * 1024
"""A longer line (a progress bar without newlines, a binary dump) is cut into pieces of this
size, each but the last ending in :data:`SPLIT_MARKER`: memory per unit stays bounded."""
SPLIT_MARKER = " [line continues]"

log = structlog.get_logger("llm_supervisor.logs")


def _tighten_dir(directory: Path) -> None:
    """The units' log directory (``STATE_DIR/logs``) is the daemon's and its group's (0750),
    also when an older version made it 0755; other users never read unit output."""
    with contextlib.suppress(OSError):
        st = directory.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and \
                stat.S_IMODE(st.st_mode) & 0o027:
            os.chmod(directory, stat.S_IMODE(st.st_mode) & ~0o027)


class UnitLog:
    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 3,
                 max_line_chars: int = MAX_LINE_CHARS):
        self.path = path
        self.max_line_chars = max_line_chars
        self.tail: deque[str] = deque()
        self._tail_chars = 0
        # The line being assembled: a list of pieces and their length (no re-join per chunk).
        self._partial: list[str] = []
        self._partial_len = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._followers: set[_Follower] = set()
        _tighten_dir(path.parent)
        self._file = RotatingFile(path, max_bytes, backups, on_dropping=self._on_dropping,
                                  resume_note=_resume_note)

    @property
    def max_bytes(self) -> int:
        return self._file.max_bytes

    @property
    def backups(self) -> int:
        return self._file.backups

    @property
    def dropped_bytes(self) -> int:
        """Output that could not be written to the file (disk full); the tail still has it."""
        return self._file.dropped_bytes

    def write(self, data: bytes) -> None:
        """Append program output (any chunking); complete lines go to the file, the tail and
        followers. Never raises: a full disk drops output (counted) but the pipe keeps draining."""
        lines = self._split(self._decoder.decode(data))
        if lines:
            self._file.write("".join(line + "\n" for line in lines).encode("utf-8", "replace"))
            for line in lines:
                self._publish(line)

    def _split(self, text: str) -> list[str]:
        """Complete lines in ``text`` (with what was pending); the rest stays pending."""
        lines: list[str] = []
        start = 0
        while (end := text.find("\n", start)) >= 0:
            self._add_partial(text[start:end], lines)
            lines.append("".join(self._partial))
            self._partial, self._partial_len = [], 0
            start = end + 1
        self._add_partial(text[start:], lines)
        return lines

    def _add_partial(self, piece: str, lines: list[str]) -> None:
        while piece:
            room = self.max_line_chars - self._partial_len
            if len(piece) < room:
                self._partial.append(piece)
                self._partial_len += len(piece)
                return
            self._partial.append(piece[:room])
            lines.append("".join(self._partial) + SPLIT_MARKER)
            self._partial, self._partial_len = [], 0
            piece = piece[room:]

    def note(self, message: str) -> None:
        """A line written by the supervisor itself (start, exit, health), marked as such."""
        self.flush_partial()
        self.write(f"[llm-supervisord] {message}\n".encode())

    def flush_partial(self) -> None:
        """The program ended (or we write a line of our own): pending output becomes a line."""
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._partial.append(rest)
        if self._partial:
            line = "".join(self._partial)
            self._partial, self._partial_len = [], 0
            self._file.write(line.encode("utf-8", "replace") + b"\n")
            self._publish(line)

    def _on_dropping(self, error: str) -> None:
        message = (f"cannot write the log file ({error}); output is kept in memory only "
                   "until writing succeeds again")
        log.warning("unit_log_write_failed", log=str(self.path), error=error)
        self._publish(f"[llm-supervisord] {message}")

    def _publish(self, line: str) -> None:
        self.tail.append(line)
        self._tail_chars += len(line)
        while len(self.tail) > TAIL_LINES or (self._tail_chars > TAIL_MAX_CHARS
                                              and len(self.tail) > 1):
            self._tail_chars -= len(self.tail.popleft())
        for follower in self._followers:
            follower.offer(line)

    def last(self, count: int) -> list[str]:
        if count <= 0:
            return []
        return list(self.tail)[-count:]

    def read_file_tail(self, count: int) -> list[str]:
        """The last ``count`` lines from disk (survives daemon restarts, unlike the in-memory
        tail), reaching into the newest rotated file when the current one is short."""
        if count <= 0:
            return []
        lines: list[str] = []
        for path in (self.path, self.path.with_name(f"{self.path.name}.1")):
            try:
                lines = _last_lines(path, count - len(lines)) + lines
            except FileNotFoundError:
                continue
            except OSError:
                return self.last(count)
            if len(lines) >= count:
                break
        return lines[-count:]

    async def follow(self) -> AsyncGenerator[str, None]:
        follower = _Follower()
        self._followers.add(follower)
        try:
            while True:
                yield await follower.get()
        finally:
            self._followers.discard(follower)

    def reopen(self) -> None:
        self._file.reopen()

    def close(self) -> None:
        self.flush_partial()
        self._file.close()


class _Follower:
    """One ``logs -f`` reader's queue, bounded by the text it holds."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.chars = 0

    def offer(self, line: str) -> None:
        if self.chars + len(line) <= FOLLOWER_MAX_CHARS:
            self.chars += len(line)
            self.queue.put_nowait(line)

    async def get(self) -> str:
        line = await self.queue.get()
        self.chars -= len(line)
        return line


def _resume_note(dropped: int, error: str) -> bytes:
    return (f"[llm-supervisord] {dropped} bytes of output were not written here ({error}); "
            "writing resumed\n").encode()


def _last_lines(path: Path, count: int, window: int = 256 * 1024) -> list[str]:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - window))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    return lines[-count:]
