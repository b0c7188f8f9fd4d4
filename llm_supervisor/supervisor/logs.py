"""Per-unit output: a size-rotated log file, an in-memory tail, and live followers.

Rotation is by size (``LLM_SUPERVISOR_LOG_MAX_BYTES``, ``LLM_SUPERVISOR_LOG_BACKUPS``);
:meth:`UnitLog.reopen` reopens the file for external rotators (``llm-supervisorctl reopen-logs``).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

TAIL_LINES = 1000


class UnitLog:
    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 3):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._partial = ""
        self._followers: set[asyncio.Queue[str]] = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the unit

    def write(self, data: bytes) -> None:
        """Append program output (any chunking); complete lines go to the tail and followers."""
        self._file.write(data)
        if self._file.tell() >= self.max_bytes:
            self._rotate()
        text = self._partial + data.decode("utf-8", errors="replace")
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._publish(line)

    def note(self, message: str) -> None:
        """A line written by the supervisor itself (start, exit, health), marked as such."""
        self.write(f"[llm-supervisord] {message}\n".encode())

    def flush_partial(self) -> None:
        if self._partial:
            self._publish(self._partial)
            self._partial = ""

    def _publish(self, line: str) -> None:
        self.tail.append(line)
        for queue in self._followers:
            if queue.qsize() < 10000:
                queue.put_nowait(line)

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

    async def follow(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._followers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._followers.discard(queue)

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups, 0, -1):
            source = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if source.exists():
                os.replace(source, self.path.with_name(f"{self.path.name}.{index}"))
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115

    def reopen(self) -> None:
        self._file.close()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115

    def close(self) -> None:
        self.flush_partial()
        self._file.close()


def _last_lines(path: Path, count: int, window: int = 256 * 1024) -> list[str]:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - window))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    return lines[-count:]
