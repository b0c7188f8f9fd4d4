"""A stuck engine (``StallTimeoutSec=``): no token for that long while requests are in flight.

Progress, not wall time: the clock is the engine's last emitted event (any token of any
request), restarted when work arrives at an idle engine, so a long answer that keeps producing
tokens is never touched (LocalAI's wall-time watchdog killed answers mid-way, LocalAI #5221).
When it fires, every request in flight is answered at once with a clear 503 (never a hang),
new requests get 503, and ``/api/health`` answers 503 with the reason: the gateway takes the
instance out (replicas take the traffic) and the supervisor restarts it after its health
``Retries=``. A worker thread stuck inside a native call cannot be interrupted from Python;
the restart ends it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llm_supervisor.model_server.engines.batching import BatchingEngine, finish

STALL_ERROR = "engine stalled"


def check(engine: BatchingEngine, timeout: float, now: float | None = None) -> str | None:
    """The reason when ``engine`` has had requests in flight and no progress for ``timeout``."""
    if engine.stalled is not None or not engine.inflight:
        return None
    quiet = (now if now is not None else time.monotonic()) - engine.progress_at
    if quiet <= timeout:
        return None
    return f"{STALL_ERROR}: no token for {quiet:.1f}s (StallTimeoutSec={timeout:g})"


def declare(engine: BatchingEngine, reason: str, log: Any = None) -> int:
    """Mark the engine stalled and answer everyone in flight (on the event loop)."""
    engine.stalled = reason
    handles = [h for h in list(engine._inflight) if h.finish_reason is None]
    for handle, kind, value in [finish(h, "error", reason) for h in handles]:
        handle._push(kind, value)
    if log is not None:
        log.error("engine_stalled", reason=reason, requests_answered=len(handles))
    if engine.metrics is not None:
        engine.metrics.failures.labels(err="stalled").inc(len(handles))
    return len(handles)


async def _watch(engine: BatchingEngine, timeout: float, log: Any) -> None:
    poll = min(1.0, max(0.05, timeout / 4))
    while engine.stalled is None:
        await asyncio.sleep(poll)
        reason = check(engine, timeout)
        if reason is not None:
            declare(engine, reason, log)


def watch(engine: BatchingEngine, timeout: float | None, log: Any = None) -> asyncio.Task[None] | None:
    """Start watching ``engine`` (None: no ``StallTimeoutSec=``, nothing to watch)."""
    if not timeout:
        return None
    task = asyncio.get_running_loop().create_task(_watch(engine, timeout, log), name="stall-watch")
    engine.stall_watch = task  # the loop keeps only a weak reference to its tasks
    return task
