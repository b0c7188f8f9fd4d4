"""Built-in plugin: Prometheus metrics of the daemon (``GET /metrics`` on the control socket).

Unit state, health and restarts are read from the manager at scrape time; health-check latency
and transitions are recorded as they happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.supervisor.state import Health, UnitState

REGISTRY = CollectorRegistry(auto_describe=True)
HEALTH_LATENCY = Histogram(
    "llm_supervisor_health_check_seconds", "Health-check latency", ["unit", "result"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "llm_supervisor_unit_transitions", "State transitions", ["unit", "to"], registry=REGISTRY
)


class _UnitCollector(Collector):
    def __init__(self) -> None:
        self.manager: Any = None

    def collect(self) -> Iterator[Metric]:
        if self.manager is None:
            return
        state = GaugeMetricFamily("llm_supervisor_unit_state", "1 for the unit's current state",
                                  labels=["unit", "state"])
        health = GaugeMetricFamily("llm_supervisor_unit_healthy",
                                   "1 healthy, 0 unhealthy/unknown (units with a check)",
                                   labels=["unit"])
        restarts = GaugeMetricFamily("llm_supervisor_unit_restarts",
                                     "Automatic restarts since the daemon started", labels=["unit"])
        for runner in self.manager.runners.values():
            for value in UnitState:
                state.add_metric([runner.name, value.value], 1.0 if runner.state == value else 0.0)
            if runner.health != Health.NONE:
                health.add_metric([runner.name], 1.0 if runner.health == Health.HEALTHY else 0.0)
            restarts.add_metric([runner.name], float(runner.restarts))
        yield state
        yield health
        yield restarts


_UNITS = _UnitCollector()
REGISTRY.register(_UNITS)


def render() -> bytes:
    return generate_latest(REGISTRY)


@hookimpl
def supervisor_started(manager: Any) -> None:
    _UNITS.manager = manager


@hookimpl
def unit_health_checked(unit, ok: bool, latency_s: float) -> None:
    HEALTH_LATENCY.labels(unit.name, "pass" if ok else "fail").observe(latency_s)


@hookimpl
def unit_state_changed(unit, new: str) -> None:
    TRANSITIONS.labels(unit.name, str(new)).inc()
