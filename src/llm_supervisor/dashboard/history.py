"""Time series for the dashboard's charts, kept by the daemon in memory.

One :class:`Sampler` task per daemon takes a point every ``DASHBOARD_SAMPLE_S`` seconds: each
unit's CPU and memory (from ``SupervisorView.statuses()``, the figures ``status`` shows) and the
model service's requests/s, tokens/s, p50/p95 latency, queue and running requests (differences
between two scrapes of its ``/metrics`` by :class:`.model_watch.ModelWatch`). Each series is a
:class:`.ring.Ring` holding ``DASHBOARD_HISTORY_S`` seconds, so memory is fixed from the start:
8 bytes per value (README: about 17 KiB per unit for an hour at 5 s). The same task reads the
supervisor's events into the :class:`.timeline.Timeline` between two samples, so the feature
costs one task however many pages are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from llm_supervisor.dashboard.latency import quantile
from llm_supervisor.dashboard.model_watch import ModelWatch, Scrape
from llm_supervisor.dashboard.ring import Ring
from llm_supervisor.dashboard.timeline import Timeline, is_other_runtime_skip
from llm_supervisor.plugins.view import SupervisorView

UNIT_COLUMNS = ("cpu", "memory")
MODEL_COLUMNS = ("requests_per_s", "tokens_per_s", "p50_s", "p95_s", "queued", "running")


def model_point(now: Scrape, before: Scrape | None) -> list[float | None]:
    """The model's chart values between two scrapes (rates need both; gauges only ``now``)."""
    rates: list[float | None] = [None, None, None, None]
    if before is not None and now.at > before.at:
        span = now.at - before.at
        rates = [max(0.0, now.counters.requests - before.counters.requests) / span,
                 max(0.0, now.counters.generated_tokens - before.counters.generated_tokens) / span,
                 quantile(0.5, now.histogram, before.histogram),
                 quantile(0.95, now.histogram, before.histogram)]
    return [*rates, now.counters.queued, now.counters.running]


class History:
    def __init__(self, interval: float, window: float):
        self.interval = interval
        self.capacity = max(2, int(window / interval) + 1)
        self.units: dict[str, Ring] = {}
        self.models: dict[str, Ring] = {}

    def record_units(self, statuses: list[dict[str, Any]], at: float) -> None:
        seen = set()
        for status in statuses:
            name = status["name"]
            if is_other_runtime_skip(status.get("state"), status.get("reason")):
                continue
            seen.add(name)
            ring = self.units.get(name)
            if ring is None:
                ring = self.units[name] = Ring(UNIT_COLUMNS, self.capacity)
            ring.append(at, [status.get("cpu_percent"), status.get("memory_bytes")])
        for gone in set(self.units) - seen:  # removed by a reload: its memory goes too
            del self.units[gone]

    def record_model(self, name: str, values: list[float | None], at: float) -> None:
        ring = self.models.get(name)
        if ring is None:
            ring = self.models[name] = Ring(MODEL_COLUMNS, self.capacity)
        ring.append(at, values)

    def as_json(self, since: float | None = None) -> dict[str, Any]:
        return {"interval": self.interval, "capacity": self.capacity,
                "units": {n: r.columns_since(since) for n, r in sorted(self.units.items())},
                "models": {n: r.columns_since(since) for n, r in sorted(self.models.items())}}

    def latest(self) -> dict[str, Any]:
        """The last point of each series (what the live stream adds to the page's charts)."""
        return {"units": {n: r.last() for n, r in self.units.items()},
                "models": {n: r.last() for n, r in self.models.items()}}

    def nbytes(self) -> int:
        return sum(r.nbytes() for r in (*self.units.values(), *self.models.values()))


class Sampler:
    """The one task behind the charts and the timeline."""

    def __init__(self, supervisor: SupervisorView, model: ModelWatch, history: History,
                 timeline: Timeline):
        self.supervisor = supervisor
        self.model = model
        self.history = history
        self.timeline = timeline
        self._previous: dict[str, Scrape] = {}  # per model: the scrape its last point used
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dashboard-sampler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def sample(self, at: float) -> None:
        self.history.record_units(self.supervisor.usages(), at)
        scrapes = dict(self.model.scrapes)
        for name in set(self._previous) - set(scrapes):  # a model went away: a gap on its chart
            self.history.record_model(name, [None] * len(MODEL_COLUMNS), at)
            del self._previous[name]
        for name, scrape in scrapes.items():
            before = self._previous.get(name)
            if before is scrape:
                continue  # no new scrape since the last point: nothing new to say
            self.history.record_model(name, model_point(scrape, before), at)
            self._previous[name] = scrape

    async def _run(self) -> None:
        events = self.supervisor.subscribe()
        next_event = asyncio.ensure_future(events.get())
        try:
            due = time.monotonic()
            while True:
                wait = due - time.monotonic()
                if wait > 0:
                    done, _ = await asyncio.wait({next_event}, timeout=wait)
                    if done:
                        self.timeline.add(next_event.result())
                        next_event = asyncio.ensure_future(events.get())
                    continue
                self.sample(time.time())
                due = max(due + self.history.interval, time.monotonic())
        finally:
            next_event.cancel()
            self.supervisor.unsubscribe(events)
