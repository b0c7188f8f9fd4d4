"""On-demand activation of catalog models: what happens between "a request names model X" and
"X's server may take it".

One :class:`Activator` per daemon. :meth:`Activator.acquire` returns a :class:`Lease` once the
model answers its health check, loading it first when it is not loaded:

- **one load per model**: every request for a loading model waits on the same load task;
- **bounded**: at most ``queue_max`` requests wait per model (then :class:`Overloaded`), each at
  most ``wait_timeout`` seconds (then :class:`NotReady`); both become 503 + ``Retry-After``;
- **memory budget**: loads are decided one at a time under a lock, with
  :func:`memory_budget.plan` choosing whom to stop; a model with requests in flight is drained
  (it takes no new ones) before it is stopped, never stopped under them;
- **no crash loop**: a model whose unit is ``failed`` is not restarted by requests (503 with the
  unit's reason); ``llm-supervisorctl models load NAME`` retries it;
- **KeepAlive=**: :meth:`reap_idle` stops idle models past their keep-alive; ``0`` stops a
  model as soon as its last request ends.

The activator never touches processes itself: it asks the manager to start and stop units
through the narrow :class:`ModelUnits` interface, so a model unit is supervised (restarted,
repaired, logged) exactly like every other unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from llm_supervisor.core.fsutil import atomic_write_text
from llm_supervisor.supervisor.memory_budget import NoRoom, Resident, mib, plan
from llm_supervisor.units.catalog import Catalog, ModelEntry

log = structlog.get_logger("llm_supervisor.models")

ACTIVE_STATES = frozenset({"starting", "running", "backoff", "repairing", "stopping"})
READY_POLL_S = 0.05
REAP_INTERVAL_S = 0.5


class ModelUnits(Protocol):
    """What the activator may do to units (implemented over the manager by the models plugin)."""

    def unit_state(self, unit: str) -> str: ...

    def unit_reason(self, unit: str) -> str: ...

    def start_unit(self, unit: str, reason: str) -> None: ...

    async def stop_unit(self, unit: str, reason: str) -> None: ...

    def unit_rss(self, unit: str) -> int | None: ...


class ActivationError(Exception):
    status = 503
    retry_after: float | None = 5.0
    kind = "unavailable"


class UnknownModel(ActivationError):
    status = 404
    retry_after = None
    kind = "model_not_found"


class Overloaded(ActivationError):
    retry_after = 2.0
    kind = "queue_full"


class NotReady(ActivationError):
    kind = "model_loading"


class ModelFailed(ActivationError):
    retry_after = 30.0
    kind = "model_failed"


class NoMemory(ActivationError):
    retry_after = 10.0
    kind = "memory_budget"


@dataclass
class ModelStatus:
    entry: ModelEntry
    upstream: str
    in_flight: int = 0
    waiting: int = 0
    loaded: bool = False
    draining: bool = False
    last_used: float = 0.0  # time.monotonic()
    last_used_wall: float | None = None
    requests: int = 0
    loads: int = 0
    evictions: int = 0
    failures: int = 0
    # Requests that waited through a load are served before the model may be evicted (else
    # two models swapping under a tight budget could unload each other before serving anyone).
    grace: int = 0
    # Its unit was started by a load still waiting for it to be ready: it holds memory. (A load
    # task still queued for the budget lock holds none and must not count, or the load holding
    # the lock would wait for it: a deadlock until the timeout.)
    reserved: bool = False
    # Its unit is being stopped (_unload): a load must wait until it is down, or it would see
    # the unit still running, wait for it to be ready, and fail when the stop lands.
    unloading: bool = False
    load_seconds: float | None = None
    error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def loading(self) -> bool:
        return self.task is not None and not self.task.done()


class Lease:
    """One request's hold on a model: ``upstream`` to send it to; :meth:`release` when done."""

    __slots__ = ("_activator", "_released", "status", "upstream")

    def __init__(self, activator: Activator, status: ModelStatus):
        self._activator = activator
        self.status = status
        self.upstream = status.upstream
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._activator._release(self.status)


class MeasuredSizes:
    """RSS measured after each load, kept across daemon restarts (``models/measured.json``)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.sizes: dict[str, int] = {k: int(v) for k, v in
                                          json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self.sizes = {}

    def get(self, name: str) -> int | None:
        return self.sizes.get(name)

    def record(self, name: str, size: int) -> None:
        self.sizes[name] = size
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.sizes, indent=1, sort_keys=True))


async def http_ready(upstream: str, timeout: float = 1.0) -> bool:
    """GET ``upstream``/api/health answered 200 (the model server says ready only when loaded)."""
    host, port = upstream.removeprefix("http://").rsplit(":", 1)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(f"GET /api/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.split(b" ")[1:2] == [b"200"]
    except (TimeoutError, OSError, IndexError):
        return False
    finally:
        writer.close()


class Activator:
    def __init__(self, catalog: Catalog, ports: dict[str, int], units: ModelUnits,
                 estimate: Callable[[ModelEntry], tuple[int, int]], budget: int, measured: MeasuredSizes, *,
                 queue_max: int = 64, wait_timeout: float = 120.0,
                 probe: Callable[[str], Awaitable[bool]] = http_ready):
        self.catalog = catalog
        self.units = units
        self.estimate = estimate
        self.budget = budget
        self.measured = measured
        self.queue_max = queue_max
        self.wait_timeout = wait_timeout
        self.probe = probe
        self.status = {name: ModelStatus(entry, f"http://127.0.0.1:{ports[name]}")
                       for name, entry in catalog.entries.items()}
        self._budget_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._estimates: dict[str, tuple[int, int]] = {}  # name -> (estimate, floor)
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ the request path
    async def acquire(self, name: str | None) -> Lease:
        entry = self.catalog.find(name)
        if entry is None:
            raise UnknownModel(f"model {name!r} is not in the catalog; known models: "
                               f"{', '.join(self.catalog.names())}")
        st = self.status[entry.name]
        if st.loaded and not st.draining and self._up(st):  # the warm path: no await
            return self._lease(st)
        if st.waiting >= self.queue_max:
            raise Overloaded(f"{st.waiting} requests already wait for model {st.name!r} to "
                             f"load (limit {self.queue_max}); retry shortly")
        deadline = time.monotonic() + self.wait_timeout
        st.waiting += 1
        try:
            while True:
                if st.loaded and (not st.draining or st.grace > 0) and self._up(st):
                    return self._lease(st)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotReady(f"model {st.name!r} is not ready after {self.wait_timeout:.0f}"
                                   f" s ({self._describe_wait(st)}); retry later")
                if st.draining:
                    await self._wait_change(left)
                    continue
                task = self._ensure_loading(st, force=False)
                done, _ = await asyncio.wait({task}, timeout=left)
                if done and (exc := task.exception()) is not None:
                    raise exc
        finally:
            st.waiting -= 1

    def _lease(self, st: ModelStatus) -> Lease:
        if st.grace > 0:
            st.grace -= 1
        st.in_flight += 1
        st.requests += 1
        st.last_used = time.monotonic()
        st.last_used_wall = time.time()
        return Lease(self, st)

    def _release(self, st: ModelStatus) -> None:
        st.in_flight -= 1
        st.last_used = time.monotonic()
        st.last_used_wall = time.time()
        if st.in_flight == 0:
            self._notify()
            if st.entry.keep_alive == 0 and not st.entry.pin and st.waiting == 0:
                self._spawn(self._unload(st, "KeepAlive=0: stopped after its request"))

    def _up(self, st: ModelStatus) -> bool:
        return self.units.unit_state(st.entry.unit_name) in ("running", "starting")

    def _describe_wait(self, st: ModelStatus) -> str:
        if st.draining:
            return "it is being unloaded to make room"
        state = self.units.unit_state(st.entry.unit_name)
        reason = self.units.unit_reason(st.entry.unit_name)
        return f"unit {st.entry.unit_name} is {state}" + (f": {reason}" if reason else "")

    # ------------------------------------------------------------------ loading
    def _ensure_loading(self, st: ModelStatus, force: bool) -> asyncio.Task[None]:
        if st.task is None or st.task.done():
            st.task = asyncio.create_task(self._load(st, force), name=f"load:{st.name}")
            st.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return st.task

    async def load(self, name: str) -> dict[str, Any]:
        """``models load NAME``: load (or retry a failed model) and wait until it is ready."""
        entry = self.catalog.find(name)
        if entry is None:
            raise UnknownModel(f"model {name!r} is not in the catalog; known models: "
                               f"{', '.join(self.catalog.names())}")
        st = self.status[entry.name]
        if not (st.loaded and self._up(st)):
            await self._ensure_loading(st, force=True)
        return self.view(st)

    async def _load(self, st: ModelStatus, force: bool) -> None:
        unit = st.entry.unit_name
        started = time.monotonic()
        while st.unloading:  # evicted a moment ago: start it again once it is down
            left = started + self.wait_timeout - time.monotonic()
            if left <= 0:
                raise NotReady(f"model {st.name!r} did not stop within {self.wait_timeout:.0f} s "
                               "to be loaded again; retry later")
            await self._wait_change(left)
        state = self.units.unit_state(unit)
        if state == "failed" and not force:
            raise ModelFailed(f"model {st.name!r} failed: {self.units.unit_reason(unit)}; "
                              f"fix it, then `llm-supervisorctl models load {st.name}`")
        try:
            if state not in ACTIVE_STATES or state == "stopping":
                await self._make_room_and_start(st)
            await self._until_ready(st)
        except NoRoom as exc:
            st.reserved = False
            st.error = str(exc)
            log.warning("model_no_room", model=st.name, error=st.error)
            raise NoMemory(st.error) from None
        except ActivationError as exc:
            st.reserved = False
            st.error = str(exc)
            st.failures += 1
            raise
        except BaseException:
            st.reserved = False
            raise
        st.reserved = False
        st.error = ""
        st.grace = st.waiting
        st.loaded = True
        st.loads += 1
        st.load_seconds = time.monotonic() - started
        st.last_used = time.monotonic()
        st.last_used_wall = time.time()
        log.info("model_loaded", model=st.name, seconds=round(st.load_seconds, 3))
        self._notify()
        self._spawn(self._measure_later(st))

    async def _make_room_and_start(self, st: ModelStatus) -> None:
        async with self._budget_lock:
            need = self.need(st.entry)
            deadline = time.monotonic() + self.wait_timeout
            while True:
                decision = plan(st.name, need, self.budget, self.residents())
                if decision.ready:
                    break
                if decision.wait_for_load:
                    if time.monotonic() > deadline:
                        raise NotReady(f"waited {self.wait_timeout:.0f} s for "
                                       f"{', '.join(decision.wait_for_load)} to finish loading "
                                       f"before making room for {st.name}")
                    await self._wait_change(deadline - time.monotonic())
                    continue
                for name in decision.evict:
                    victim = self.status[name]
                    victim.evictions += 1
                    await self._unload(victim, f"evicted (least recently used) to make room for "
                                               f"{st.name}: MODEL_MEMORY_BUDGET")
                for name in decision.wait_for:
                    self.status[name].draining = True
                try:
                    await self._drained(decision.wait_for)
                finally:
                    for name in decision.wait_for:
                        self.status[name].draining = False
                for name in decision.wait_for:
                    victim = self.status[name]
                    if victim.in_flight == 0 and victim.grace == 0:
                        victim.evictions += 1
                        await self._unload(victim, f"evicted after draining, to make room for "
                                                   f"{st.name}: MODEL_MEMORY_BUDGET")
            log.info("model_activating", model=st.name, need=mib(need), budget=mib(self.budget))
            st.reserved = True
            self.units.start_unit(st.entry.unit_name, f"activated: a request for model {st.name}")

    async def _drained(self, names: list[str]) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while any(self.status[n].in_flight or self.status[n].grace for n in names):
            left = deadline - time.monotonic()
            if left <= 0:
                busy = ", ".join(f"{n} ({self.status[n].in_flight} in flight)" for n in names)
                raise NotReady(f"waited {self.wait_timeout:.0f} s for busy models to finish "
                               f"their requests before unloading them: {busy}")
            await self._wait_change(left)

    async def _until_ready(self, st: ModelStatus) -> None:
        unit = st.entry.unit_name
        seen_active = False
        while True:
            state = self.units.unit_state(unit)
            if state == "failed":
                raise ModelFailed(f"model {st.name!r} failed while loading: "
                                  f"{self.units.unit_reason(unit)}")
            if state in ACTIVE_STATES:
                seen_active = True
            elif seen_active and state in ("inactive", "skipped"):
                raise ModelFailed(f"model {st.name!r} stopped while loading: "
                                  f"{self.units.unit_reason(unit)}")
            if state in ("running", "starting") and await self.probe(st.upstream):
                return
            await asyncio.sleep(READY_POLL_S)

    # ------------------------------------------------------------------ stopping
    async def unload(self, name: str) -> dict[str, Any]:
        """``models unload NAME``: stop it now unless it has requests in flight."""
        entry = self.catalog.find(name)
        if entry is None:
            raise UnknownModel(f"model {name!r} is not in the catalog; known models: "
                               f"{', '.join(self.catalog.names())}")
        st = self.status[entry.name]
        if st.in_flight:
            raise ActivationError(f"model {st.name!r} has {st.in_flight} requests in flight; "
                                  "unload it when they finish")
        await self._unload(st, "unloaded by request (llm-supervisorctl models unload)")
        return self.view(st)

    async def _unload(self, st: ModelStatus, reason: str) -> None:
        self._measure(st)
        st.loaded = False
        st.unloading = True
        log.info("model_unloading", model=st.name, reason=reason)
        try:
            await self.units.stop_unit(st.entry.unit_name, reason)
        finally:
            st.unloading = False
            self._notify()

    async def reap_idle(self) -> None:
        """Stop every loaded, idle, unpinned model past its ``KeepAlive=``; runs forever."""
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for st in self.status.values():
                keep = st.entry.keep_alive
                if (st.loaded and not st.entry.pin and not math.isinf(keep) and not st.in_flight
                        and not st.waiting and not st.loading and now - st.last_used >= keep):
                    with contextlib.suppress(Exception):
                        await self._unload(st, f"idle for {now - st.last_used:.0f} s "
                                               f"(KeepAlive={keep:g}s)")

    def unit_changed(self, unit: str, new_state: str) -> None:
        """Every unit transition (from the plugin's hook): a model whose unit went down is no
        longer loaded."""
        for st in self.status.values():
            if st.entry.unit_name == unit:
                # Healthy, started with the stack, by hand or after a restart (a load in
                # progress marks it loaded itself, once its waiters are counted).
                if new_state == "running" and not st.loaded and not st.reserved:
                    st.loaded = True
                    st.last_used = st.last_used or time.monotonic()
                elif new_state not in ("running", "starting"):
                    st.loaded = False
                self._notify()

    # ------------------------------------------------------------------ memory
    def need(self, entry: ModelEntry) -> int:
        """The estimate until the model was measured; then the measured RSS, but never less
        than its weights + KV cache (pages llama.cpp has allocated but not yet touched are not
        in the RSS right after a load; they will be once contexts fill)."""
        if entry.name not in self._estimates:
            self._estimates[entry.name] = self.estimate(entry)
        total, floor = self._estimates[entry.name]
        measured = self.measured.get(entry.name)
        return max(measured, floor) if measured else total

    def residents(self) -> list[Resident]:
        found = []
        for st in self.status.values():
            state = self.units.unit_state(st.entry.unit_name)
            if state in ACTIVE_STATES or st.reserved:
                found.append(Resident(st.name, self.need(st.entry), st.entry.pin,
                                      st.in_flight + st.grace, loading=not st.loaded,
                                      last_used=st.last_used))
        return found

    def _measure(self, st: ModelStatus) -> None:
        rss = self.units.unit_rss(st.entry.unit_name)
        if rss and st.loaded:
            self.measured.record(st.name, rss)

    async def _measure_later(self, st: ModelStatus, delay: float = 1.0) -> None:
        await asyncio.sleep(delay)
        self._measure(st)

    # ------------------------------------------------------------------ plumbing
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(timeout, 0.5))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in [*self._background, *(s.task for s in self.status.values() if s.task)]:
            task.cancel()

    # ------------------------------------------------------------------ views
    def state_of(self, st: ModelStatus) -> str:
        unit_state = self.units.unit_state(st.entry.unit_name)
        if unit_state == "failed" or (st.error and not st.loading and not st.loaded):
            return "failed"
        if st.loaded and unit_state in ("running", "starting"):
            return "loaded"
        if st.loading or unit_state in ACTIVE_STATES:
            return "loading"
        return "unloaded"

    def view(self, st: ModelStatus) -> dict[str, Any]:
        keep = st.entry.keep_alive
        state = self.state_of(st)
        left = None
        if state == "loaded" and not math.isinf(keep) and not st.entry.pin:
            left = 0.0 if st.in_flight else max(0.0, keep - (time.monotonic() - st.last_used))
        try:
            estimate: int | None = self.need(st.entry)
        except Exception:  # an unreadable model file: shown, and the load will say why
            estimate = None
        reason = st.error or (self.units.unit_reason(st.entry.unit_name) if state == "failed"
                              else "")
        return {
            "id": st.name, "state": state, "unit": st.entry.unit_name,
            "unit_state": self.units.unit_state(st.entry.unit_name),
            "memory_bytes": self.measured.get(st.name) if state == "loaded" else None,
            "estimate_bytes": estimate, "measured_bytes": self.measured.get(st.name),
            "memory_source": "measured" if self.measured.get(st.name) else "estimate",
            "in_flight": st.in_flight, "waiting": st.waiting,
            "last_used": st.last_used_wall, "keep_alive_s": None if math.isinf(keep) else keep,
            "keep_alive_left_s": None if left is None else round(left, 1),
            "pinned": st.entry.pin, "preload": st.entry.preload,
            "requests": st.requests, "loads": st.loads, "evictions": st.evictions,
            "failures": st.failures, "load_seconds": st.load_seconds,
            "engine": st.entry.engine, "source": st.entry.source.describe(),
            "aliases": st.entry.aliases, "upstream": st.upstream, "reason": reason,
        }

    def views(self) -> list[dict[str, Any]]:
        return [self.view(self.status[name]) for name in self.catalog.names()]
