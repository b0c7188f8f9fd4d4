"""The dashboard's live stream (``GET /api/events``), shared by every open page.

One task builds the snapshot (units with their CPU/memory, model, routes) at most once per
interval, or sooner after a state/health change (never more often than ``min_gap``), and hands
the same encoded message to every stream; state changes and log lines are forwarded the same
way. So the cost on the daemon's event loop does not grow with the number of open pages, and
the number of streams is capped: one more is refused (HTTP 503) instead of slowing the daemon.
A stream that cannot keep up loses its oldest messages, never the daemon's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from llm_supervisor.plugins.view import SupervisorView

QUEUE_SIZE = 256


class TooManyStreams(Exception):
    pass


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class LiveHub:
    """``build()`` returns the snapshot without log lines; ``feed`` and ``supervisor`` offer
    ``subscribe()``/``unsubscribe(queue)``."""

    def __init__(self, supervisor: SupervisorView, feed: Any, build: Callable[[], dict[str, Any]],
                 interval: float = 2.0, max_streams: int = 16, min_gap: float = 0.25):
        self.supervisor = supervisor
        self.feed = feed
        self.build = build
        self.interval = interval
        self.max_streams = max_streams
        self.min_gap = min_gap
        self.builds = 0
        self._streams: set[asyncio.Queue[str]] = set()
        self._latest: dict[str, Any] | None = None
        self._latest_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return len(self._streams)

    def snapshot(self) -> dict[str, Any]:
        """The shared snapshot, built anew only when the last one is older than the interval."""
        if self._latest is None or time.monotonic() - self._latest_at >= self.interval:
            self._rebuild()
        assert self._latest is not None
        return self._latest

    def _rebuild(self) -> str:
        self.builds += 1
        self._latest_at = time.monotonic()
        self._latest = {**self.build(), "taken": time.time()}
        return sse("snapshot", self._latest)

    def subscribe(self) -> asyncio.Queue[str]:
        if len(self._streams) >= self.max_streams:
            raise TooManyStreams(f"{len(self._streams)} live dashboard streams are open, the "
                                 "most DASHBOARD_MAX_STREAMS allows; close a dashboard tab or "
                                 "raise DASHBOARD_MAX_STREAMS")
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._streams.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._streams.discard(queue)

    def _send(self, message: str) -> None:
        for queue in self._streams:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(message)

    async def _run(self) -> None:
        """Runs while at least one stream is open."""
        changes = self.supervisor.subscribe()
        logs = self.feed.subscribe()
        next_log = asyncio.ensure_future(logs.get())
        next_change = asyncio.ensure_future(changes.get())
        dirty = False
        try:
            while self._streams:
                due = self._latest_at + (self.min_gap if dirty else self.interval)
                wait = max(0.0, due - time.monotonic())
                done, _ = await asyncio.wait({next_log, next_change}, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
                if next_log in done:
                    self._send(sse("log", next_log.result().as_dict()))
                    next_log = asyncio.ensure_future(logs.get())
                if next_change in done:
                    event = next_change.result()
                    self._send(sse(event.get("type", "change"), event))
                    next_change = asyncio.ensure_future(changes.get())
                    dirty = True
                if time.monotonic() >= due and self._streams:
                    self._send(self._rebuild())
                    dirty = False
        finally:
            next_log.cancel()
            next_change.cancel()
            self.supervisor.unsubscribe(changes)
            self.feed.unsubscribe(logs)

    async def close(self) -> None:
        self._streams.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
