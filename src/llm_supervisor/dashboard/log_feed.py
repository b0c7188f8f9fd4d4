"""Every unit's output merged by time: the daemon follows each unit's log and stamps each line
as it arrives (unit programs write no common timestamp, so arrival is the one true order).

Before the first line arrives, the tail each unit's log file kept from earlier runs is read
once, stamped with the file's modification time, so ``logs --all`` is not empty after a
daemon restart. Memory is bounded: the newest :data:`KEEP_LINES` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.runtimes.logs import UnitLog

KEEP_LINES = 2000
RESYNC_S = 1.0
"""How often the runners are compared with those followed (a reload replaces them)."""


@dataclass(frozen=True)
class LogLine:
    at: float
    unit: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "unit": self.unit, "text": self.text}

    def format(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        return f"{stamp}.{int(self.at % 1 * 1000):03d} {self.unit:<16} | {self.text}"


class LogFeed:
    def __init__(self, supervisor: SupervisorView, keep: int = KEEP_LINES):
        self.supervisor = supervisor
        self.lines: deque[LogLine] = deque(maxlen=keep)
        self._followed: dict[str, tuple[object, asyncio.Task[None]]] = {}
        self._listeners: set[asyncio.Queue[LogLine]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._backfill()
        self._resync()
        self._task = asyncio.create_task(self._watch(), name="log-feed")

    async def close(self) -> None:
        tasks = [task for _, task in self._followed.values()]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._followed.clear()

    def _backfill(self, per_unit: int = 50) -> None:
        earlier: list[LogLine] = []
        for name, unit_log in self._logs().items():
            try:
                mtime = unit_log.path.stat().st_mtime
                lines = unit_log.read_file_tail(per_unit)
            except OSError:
                continue
            earlier.extend(LogLine(mtime, _short(name), line) for line in lines)
        earlier.sort(key=lambda line: line.at)  # stable: each unit's lines keep their order
        self.lines.extend(earlier)

    def _resync(self) -> None:
        current = self._logs()
        for name, (log, task) in list(self._followed.items()):
            if current.get(name) is not log:
                task.cancel()
                del self._followed[name]
        for name, unit_log in current.items():
            if name not in self._followed:
                task = asyncio.create_task(self._follow(name, unit_log), name=f"log-feed:{name}")
                self._followed[name] = (unit_log, task)

    def _logs(self) -> dict[str, UnitLog]:
        """Every service's log, by full unit name."""
        found = {}
        for name, unit in self.supervisor.units().items():
            if unit.is_service:
                unit_log = self.supervisor.unit_log(name)
                if unit_log is not None:
                    found[name] = unit_log
        return found

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            self._resync()

    async def _follow(self, name: str, unit_log: UnitLog) -> None:
        unit = _short(name)
        async for text in unit_log.follow():
            self.add(LogLine(time.time(), unit, text))

    def add(self, line: LogLine) -> None:
        self.lines.append(line)
        for queue in self._listeners:
            if queue.qsize() < 10000:
                queue.put_nowait(line)

    def tail(self, count: int) -> list[LogLine]:
        if count <= 0:
            return []
        return list(self.lines)[-count:]

    def subscribe(self) -> asyncio.Queue[LogLine]:
        """A queue that gets every line from now on (subscribe before reading the tail: no
        line falls between the two)."""
        queue: asyncio.Queue[LogLine] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[LogLine]) -> None:
        self._listeners.discard(queue)


def _short(name: str) -> str:
    return name.removesuffix(".service")
