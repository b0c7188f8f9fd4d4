"""The models as the dashboard shows them: the default model service's ``/api/health``, and the
request rate, latency and tokens per second from the ``/metrics`` of every model unit that is up
(the default ``model-service`` and each loaded catalog model, ``model@NAME``), polled every
:data:`POLL_S` (one poller per daemon, whatever the number of open pages). The last scrape of
each model's cumulative counters and latency histogram (``scrapes``) feeds the charts
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
from llm_supervisor.units.catalog import DEFAULT_MODEL_UNIT, model_of_unit

POLL_S = 2.0
# The default model's name in the charts: its unit's short name, as each catalog model's is.
DEFAULT_MODEL = DEFAULT_MODEL_UNIT.removesuffix(".service")


class Scrape:
    """One scrape of ``/metrics``: cumulative counters, the latency histogram, and when."""

    def __init__(self, counters: ModelCounters, histogram: dict[float, float], at: float):
        self.counters = counters
        self.histogram = histogram
        self.at = at


class ModelWatch:
    def __init__(self, supervisor: SupervisorView, poll_s: float = POLL_S):
        self.supervisor = supervisor
        self.rates = RateTracker()
        self.latest: dict[str, Any] = {"health": None, "metrics": None}
        self.scrapes: dict[str, Scrape] = {}  # model (its unit's short name) -> last scrape
        self.poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="dashboard-model-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def scrape(self) -> Scrape | None:
        """The default model's last scrape."""
        return self.scrapes.get(DEFAULT_MODEL)

    def _up_models(self) -> dict[str, str]:
        """Model name -> base URL of every model unit that is starting or running."""
        found: dict[str, str] = {}
        for name, unit in self.supervisor.units().items():
            if model_of_unit(name) is None or not self.supervisor.is_up(name):
                continue
            port = str(self.supervisor.settings.model_service_port)
            with contextlib.suppress(Exception):  # an unreadable EnvironmentFile: the setting
                port = self.supervisor.environment_for(unit).get("MODEL_SERVICE_PORT") or port
            found[unit.short_name] = f"http://127.0.0.1:{port}"
        return found

    async def _poll(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                models = self._up_models()
                self.scrapes = {name: scrape for name, scrape in self.scrapes.items()
                                if name in models}
                if DEFAULT_MODEL not in models:
                    self.latest = {"health": None, "metrics": None}
                for name, base in models.items():
                    await self._once(client, name, base)
                await asyncio.sleep(self.poll_s)

    async def _once(self, client: httpx.AsyncClient, name: str, base: str) -> None:
        health: dict[str, Any] | None = None
        metrics: dict[str, Any] | None = None
        if name == DEFAULT_MODEL:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                answer = (await client.get(f"{base}/api/health")).json()
                health = answer if isinstance(answer, dict) else None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await client.get(f"{base}/metrics")
            if response.status_code == 200:
                counters = parse(response.text)
                if name == DEFAULT_MODEL:
                    metrics = self.rates.update(counters)
                self.scrapes[name] = Scrape(counters, buckets(response.text), time.time())
        if name == DEFAULT_MODEL:
            self.latest = {"health": health, "metrics": metrics}
