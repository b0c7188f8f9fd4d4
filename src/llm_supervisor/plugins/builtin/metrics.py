"""Built-in plugin: Prometheus metrics of the daemon (``GET /metrics`` on the control socket).

Unit state, health, restarts, CPU and memory are read from the manager at scrape time;
health-check latency and transitions are recorded as they happen. Each daemon's plugin instance
has its own registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.supervisor.state import Health, UnitState
from llm_supervisor.units.model import Unit

if TYPE_CHECKING:
    from sanic import Sanic


class _UnitCollector(Collector):
    def __init__(self, supervisor: SupervisorView) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("llm_supervisor_unit_state", "1 for the unit's current state",
                                  labels=["unit", "state"])
        health = GaugeMetricFamily("llm_supervisor_unit_healthy",
                                   "1 healthy, 0 unhealthy/unknown (units with a check)",
                                   labels=["unit"])
        restarts = GaugeMetricFamily("llm_supervisor_unit_restarts",
                                     "Automatic restarts since the daemon started", labels=["unit"])
        cpu = GaugeMetricFamily("llm_supervisor_unit_cpu_percent",
                                "CPU of the unit's process tree or container (100 = one core)",
                                labels=["unit"])
        memory = GaugeMetricFamily("llm_supervisor_unit_memory_bytes",
                                   "Resident memory of the unit's process tree or container",
                                   labels=["unit"])
        degraded = GaugeMetricFamily("llm_supervisor_unit_degraded",
                                     "1 while a heal runs the unit degraded (cheaper, moved, "
                                     "other engine), 0 once it answers again",
                                     labels=["unit", "kind"])
        heals = GaugeMetricFamily("llm_supervisor_unit_heals",
                                  "Heals of the unit since the daemon started, by failure kind",
                                  labels=["unit", "kind"])
        memory_max = GaugeMetricFamily("llm_supervisor_unit_memory_max_bytes",
                                       "The unit's MemoryMax=", labels=["unit"])
        for status in self.supervisor.statuses():  # plugins' fields (heal, memory_max) included
            name = status["unit"]
            heal = status.get("heal") or {}
            if heal:
                degraded.add_metric([name, heal["kind"]],
                                    1.0 if heal["state"] == "degraded" else 0.0)
                for kind, count in heal.get("heals", {}).items():
                    heals.add_metric([name, kind], float(count))
            if status.get("memory_max"):
                memory_max.add_metric([name], float(status["memory_max"]))
            for value in UnitState:
                state.add_metric([name, value.value], 1.0 if status["state"] == value else 0.0)
            if status["health"] != Health.NONE:
                health.add_metric([name], 1.0 if status["health"] == Health.HEALTHY else 0.0)
            restarts.add_metric([name], float(status["restarts"]))
            if status.get("cpu_percent") is not None:
                cpu.add_metric([name], float(status["cpu_percent"]))
            if status.get("memory_bytes") is not None:
                memory.add_metric([name], float(status["memory_bytes"]))
        yield state
        yield health
        yield restarts
        yield cpu
        yield memory
        yield degraded
        yield heals
        yield memory_max


class MetricsPlugin:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.health_latency = Histogram(
            "llm_supervisor_health_check_seconds", "Health-check latency", ["unit", "result"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.transitions = Counter("llm_supervisor_unit_transitions", "State transitions",
                                   ["unit", "to"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    @hookimpl
    def control_routes(self, app: Sanic, supervisor: SupervisorView) -> None:
        from sanic import Request, response

        self.registry.register(_UnitCollector(supervisor))

        @app.get("/metrics")
        async def prometheus(request: Request) -> response.HTTPResponse:
            return response.raw(self.render(), content_type="text/plain; version=0.0.4")

    @hookimpl
    def unit_health_checked(self, unit: Unit, ok: bool, latency_s: float) -> None:
        self.health_latency.labels(unit.name, "pass" if ok else "fail").observe(latency_s)

    @hookimpl
    def unit_state_changed(self, unit: Unit, new: str) -> None:
        self.transitions.labels(unit.name, str(new)).inc()


def make_plugin() -> MetricsPlugin:
    return MetricsPlugin()
