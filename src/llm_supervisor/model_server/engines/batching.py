"""What every generation engine shares: the request handle, the queue, admission limits,
cancellation, shutdown and the metrics gauges. No model library is imported here.

An engine (transformers in :mod:`.engine`, llama.cpp in :mod:`.llama_engine`) subclasses
:class:`BatchingEngine` and implements three methods that run on its one worker thread:
``_admit`` (move waiting requests into the running batch), ``_step`` (one decoding step for
every running sequence) and ``_drop_all`` (forget the running batch). The HTTP side only ever
talks to the loop-side API (:meth:`BatchingEngine.submit`, :class:`GenerationHandle`).

Tokens reach the event loop through ``call_soon_threadsafe`` (one hop per step for all events);
cancelling a handle (client gone, stop string seen) drops its sequence at the next step.

Failures answer every request they touch and nothing else (see each engine for what a step can
fail); every ``error``/``done`` event frees the request's in-flight slot. Should the worker
thread itself end, :meth:`BatchingEngine.problem` says so and ``/api/health`` stops answering
200, so the supervisor restarts the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from llm_supervisor.model_server.metrics import Metrics


class EngineError(Exception):
    """Base of the errors :meth:`BatchingEngine.submit` raises."""


class Overloaded(EngineError):
    """Too many requests in flight; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, limit: int) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(f"server is at its limit of {limit} concurrent requests")


class ShuttingDown(EngineError):
    """The engine no longer accepts work."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding parameters. ``temperature == 0`` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # never produce EOS: exactly max_new_tokens tokens (benchmarks)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Timing:
    """Monotonic timestamps of one request's life."""

    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None
    first_token: float | None = None
    finished: float | None = None


_ids = itertools.count(1)

Event = tuple["GenerationHandle", str, Any]


class GenerationHandle:
    """One request as the HTTP side sees it: an async stream of token ids, then a finish reason.

    Events are ``("token", id)``, ``("done", reason)`` or ``("error", message)``; ``reason`` is
    ``eos``, ``length``, ``stop`` (set by the caller via :meth:`cancel`), or ``cancelled``.
    """

    def __init__(self, prompt_ids: list[int], params: SamplingParams, engine: BatchingEngine) -> None:
        self.id = next(_ids)
        self.prompt_ids = prompt_ids
        self.params = params
        self.seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "big")
        self.timing = Timing()
        self.cancelled = False  # written by the loop thread, read by the worker
        self.cancel_reason = "cancelled"
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._engine = engine
        self._released = False

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop generating for this request (idempotent; harmless once finished)."""
        if not self.cancelled and self.finish_reason is None:
            self.cancel_reason = reason
            self.cancelled = True
            self._engine._wake()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """Yield events until the request is done or failed."""
        while True:
            kind, value = await self._queue.get()
            yield kind, value
            if kind in ("done", "error"):
                return

    # called on the event loop by the engine
    def _push(self, kind: str, value: Any) -> None:
        if kind == "token":
            self.completion_tokens += 1
        elif kind in ("done", "error"):
            self.finish_reason = value if kind == "done" else "error"
            self._engine._release(self)
        self._queue.put_nowait((kind, value))


def finish(handle: GenerationHandle, kind: str, value: str) -> Event:
    """The last event of a request (``done`` with a reason, or ``error`` with a message)."""
    handle.timing.finished = time.monotonic()
    return handle, kind, value


def _dispatch(events: list[Event]) -> None:
    for handle, kind, value in events:
        handle._push(kind, value)


class BatchingEngine:
    """Queue, limits and the worker thread; subclasses supply the model-specific steps.

    Create it on the event loop, then :meth:`start`. ``name`` is what ``/api/health`` reports
    as ``engine``.
    """

    name = "?"

    def __init__(
        self,
        loaded: Any,
        *,
        max_batch_size: int,
        max_concurrent: int,
        metrics: Metrics | None = None,
        log: Any = None,
    ) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.max_batch_size = max_batch_size
        self.max_concurrent = max_concurrent
        self.metrics = metrics
        self.log = log
        self.eos_ids = set(loaded.eos_token_ids)
        self._pending: collections.deque[GenerationHandle] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._accepting = True
        self._inflight: set[GenerationHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._avg_seconds = 2.0
        self._running = 0
        self._died: str | None = None  # why the worker thread ended unexpectedly
        # Stall detection (:mod:`.stall`): when the last event left the worker, and why the
        # engine was declared stuck.
        self.progress_at = time.monotonic()
        self.stalled: str | None = None
        self.stall_watch: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ loop-side API

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return self._running

    def problem(self) -> str | None:
        """Why this engine can no longer generate (its worker thread ended), else ``None``."""
        if self._died is not None:
            return self._died
        if self.stalled is not None:
            return self.stalled
        if self._thread is not None and not self._thread.is_alive() and not self._stop:
            return "the generation worker thread has ended"
        return None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="generation-worker", daemon=True)
        self._thread.start()

    def retry_after(self) -> int:
        """Seconds a rejected client should wait: about one request's duration per batch ahead."""
        batches_ahead = 1 + len(self._pending) / max(self.max_batch_size, 1)
        return max(1, math.ceil(self._avg_seconds * batches_ahead))

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle:
        """Queue a request. Raises :class:`Overloaded` or :class:`ShuttingDown`."""
        if not self._accepting:
            raise ShuttingDown("server is shutting down")
        if self._died is not None:
            raise ShuttingDown(f"the generation worker has stopped ({self._died}); restart the server")
        if self.stalled is not None:
            raise ShuttingDown(f"{self.stalled}; the supervisor restarts it, retry shortly")
        if len(self._inflight) >= self.max_concurrent:
            raise Overloaded(self.retry_after(), self.max_concurrent)
        if not self._inflight:
            self.progress_at = time.monotonic()  # an idle engine's stall clock starts now
        handle = GenerationHandle(prompt_ids, params, self)
        self._inflight.add(handle)
        self._idle.clear()
        with self._cond:
            self._pending.append(handle)
            self._cond.notify()
        self._gauges()
        return handle

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish for ``grace`` seconds, cancel the rest,
        then stop the worker."""
        self._accepting = False
        if self.stalled is not None:
            grace = 0.0  # a stuck worker finishes nothing: do not wait for it
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        except TimeoutError:
            for handle in list(self._inflight):
                handle.cancel("shutdown")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=2.0)
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            join = 0.5 if self.stalled is not None else 5.0
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, join)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _release(self, handle: GenerationHandle) -> None:
        if handle._released:
            return
        handle._released = True
        self._inflight.discard(handle)
        t = handle.timing
        if t.finished is not None:
            self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * (t.finished - t.enqueued)
        if not self._inflight:
            self._idle.set()
        self._gauges()

    def _gauges(self) -> None:
        """The queue gauge (the running gauges are the worker's: :meth:`_batch_gauge`)."""
        if self.metrics:
            self.metrics.queue_size.set(len(self._pending))

    def _emit(self, events: list[Event]) -> None:
        """Deliver a step's events to the loop in one thread hop."""
        if events:
            self.progress_at = time.monotonic()
        if events and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(_dispatch, events)

    def _loop_gauges(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._gauges)

    # ------------------------------------------------------------------ worker thread

    def _busy(self) -> bool:
        """Whether a batch is running (the worker keeps stepping without waiting)."""
        raise NotImplementedError

    def _admit(self) -> None:
        """Move waiting requests into free batch slots (see :meth:`_take_pending`)."""
        raise NotImplementedError

    def _step(self) -> None:
        """One decoding step for every running sequence."""
        raise NotImplementedError

    def _drop_all(self) -> list[GenerationHandle]:
        """Forget the running batch; return its requests (they get a final event)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _worker_context(self) -> Iterator[None]:
        """Wraps the worker's whole life (e.g. ``torch.inference_mode``)."""
        yield

    def _run(self) -> None:
        try:
            with self._worker_context():
                while True:
                    with self._cond:
                        while not self._stop and not self._pending and not self._busy():
                            self._cond.wait(timeout=1.0)
                        if self._stop:
                            break
                    try:
                        self._admit()
                        if self._busy():
                            self._step()
                    except Exception as exc:  # a bug or OOM in a step: fail the batch
                        self._fail_all(exc)
        except BaseException as exc:
            # Not expected (an Exception is handled above): record it for /api/health, answer
            # everyone below, and let the thread end.
            self._died = f"{type(exc).__name__}: {exc}"
            self._accepting = False
            if self.log:
                self.log.exception("generation_worker_died", error=self._died)
        finally:
            self._fail_all(None)

    def _take_pending(self, free: int) -> list[GenerationHandle]:
        """Up to ``free`` waiting requests; cancelled ones get their final event instead."""
        taken: list[GenerationHandle] = []
        events: list[Event] = []
        with self._cond:
            while self._pending and len(taken) < free:
                handle = self._pending.popleft()
                if handle.cancelled:
                    events.append(finish(handle, "done", handle.cancel_reason))
                else:
                    taken.append(handle)
        self._emit(events)
        return taken

    def _fail_all(self, exc: Exception | None) -> None:
        """End the running batch: with ``exc`` its requests fail; without (the worker stopping)
        they and every queued request are cancelled, or fail when the worker died."""
        handles = self._drop_all()
        self._batch_gauge(0)
        if exc is not None:
            kind, value = "error", f"{type(exc).__name__}: {exc}"
        elif self._died is not None:
            kind, value = "error", f"the generation worker stopped: {self._died}"
        else:  # each request ends with its cancel_reason: "cancelled", or why it was asked to
            # stop ("shutdown" after the grace period, when the worker stops before getting to it)
            kind, value = "done", ""
        with self._cond:
            if exc is None:
                handles += list(self._pending)
                self._pending.clear()
        events = [finish(h, kind, value or h.cancel_reason)
                  for h in handles if h.finish_reason is None]
        if exc is not None and self.log:
            self.log.error("generation_failed", error_type=type(exc).__name__, error=str(exc))
        if self.metrics and exc is not None:
            self.metrics.failures.labels(err="generation").inc(len(handles))
        self._emit(events)

    def _fail(self, handles: list[GenerationHandle], exc: Exception) -> None:
        """Answer ``handles`` with an error event (which frees their slots)."""
        message = f"{type(exc).__name__}: {exc}"
        self._emit([finish(h, "error", message) for h in handles if h.finish_reason is None])
        if self.log:
            self.log.error(
                "generation_failed", error_type=type(exc).__name__, error=str(exc), requests=len(handles)
            )
        if self.metrics:
            self.metrics.failures.labels(err="generation").inc(len(handles))

    def _batch_gauge(self, size: int) -> None:
        """Record the running batch's size; the worker calls it after every admit and step,
        also when the batch has just emptied. Only the worker writes these gauges: set from
        the loop (when a request is released) they raced with the worker and could keep the
        last non-zero value after the batch emptied."""
        self._running = size
        if self.metrics:
            self.metrics.batch_size.set(size)
            self.metrics.running.set(size)
