"""The passing ``tcp://`` checks of healthy units, run together by one task.

A thousand healthy units checked every two seconds were a thousand tasks waking 500 times a
second, each only to learn from the listening table that its port still accepts. A healthy
unit's watch hands its schedule to :class:`PassingChecks` instead: one task wakes every
``TICK_S``, runs the checks that are due against the table (:func:`~.tcp_probe.accepting_now`),
and wakes a unit's own watch only when its check does not pass there. The watch then probes for
real (a connect, with its timeout) and counts the failure as before. A check runs up to
``TICK_S`` after it is due, so only checks with ``Interval=`` of at least ``MIN_INTERVAL_S``
are batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

from llm_supervisor.supervisor.tcp_probe import accepting_now

TICK_S = 0.1
MIN_INTERVAL_S = 1.0

_Entry = tuple[float, int, str, float, Callable[[float], None], "asyncio.Future[None]"]


class PassingChecks:
    def __init__(self) -> None:
        self._due: list[_Entry] = []
        self._order = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._added = asyncio.Event()

    async def until_not_passing(self, target: str, interval: float,
                                passed: Callable[[float], None]) -> None:
        """Check ``tcp://TARGET`` every ``interval`` from the table, calling ``passed(latency)``
        for each check that passes; return at the first that does not."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._due, (time.monotonic() + interval, next(self._order), target,
                                   interval, passed, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="health-checks-batched")
        self._added.set()
        await future  # cancelled with the watch: the entry is dropped when it comes due

    async def _run(self) -> None:
        while True:
            if not self._due:
                self._added.clear()
                await self._added.wait()
            await asyncio.sleep(TICK_S)
            self.run_due(time.monotonic())

    def run_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            due, _, target, interval, passed, future = heapq.heappop(self._due)
            if future.done():
                continue
            started = time.perf_counter()
            if not accepting_now(target):
                future.set_result(None)
                continue
            passed(time.perf_counter() - started)
            # The next check is due an interval after this one was (never in the past).
            heapq.heappush(self._due, (max(due + interval, now), next(self._order), target,
                                       interval, passed, future))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for entry in self._due:
            entry[5].cancel()
        self._due.clear()
