"""The model service as the dashboard shows it: its ``/api/health`` and the request rate,
latency and tokens per second from its ``/metrics``, polled every :data:`POLL_S` while the
model-service unit is up (one poller per daemon, whatever the number of open pages). The last
scrape's cumulative counters and latency histogram (``scrape``) feed the charts
(:mod:`.history`), which take their own differences over their own interval."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from llm_supervisor.dashboard.latency import buckets
from llm_supervisor.model_server.metrics_reader import ModelCounters, RateTracker, parse
from llm_supervisor.plugins.view import SupervisorView

POLL_S = 2.0
MODEL_UNIT = "model-service.service"


class Scrape:
    """One scrape of ``/metrics``: cumulative counters, the latency histogram, and when."""

    def __init__(self, counters: ModelCounters, histogram: dict[float, float], at: float):
        self.counters = counters
        self.histogram = histogram
        self.at = at


class ModelWatch:
    def __init__(self, supervisor: SupervisorView, poll_s: float = POLL_S):
        self.supervisor = supervisor
        self.base = f"http://127.0.0.1:{supervisor.settings.model_service_port}"
        self.rates = RateTracker()
        self.latest: dict[str, Any] = {"health": None, "metrics": None}
        self.scrape: Scrape | None = None
        self.poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="dashboard-model-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _unit_up(self) -> bool:
        status = self.supervisor.unit_status(MODEL_UNIT)
        return status is not None and status["state"] in ("starting", "running")

    async def _poll(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self._unit_up():
                    await self._once(client)
                else:
                    self.latest = {"health": None, "metrics": None}
                    self.scrape = None
                await asyncio.sleep(self.poll_s)

    async def _once(self, client: httpx.AsyncClient) -> None:
        health: dict[str, Any] | None = None
        metrics: dict[str, Any] | None = None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = (await client.get(f"{self.base}/api/health")).json()
            health = answer if isinstance(answer, dict) else None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await client.get(f"{self.base}/metrics")
            if response.status_code == 200:
                counters = parse(response.text)
                metrics = self.rates.update(counters)
                self.scrape = Scrape(counters, buckets(response.text), time.time())
        self.latest = {"health": health, "metrics": metrics}
