"""A running unit's health checks: probe on the ``[Health]`` schedule until the unit must be
restarted, and say why.

Quick first probes while the unit starts (50 ms, doubling up to ``Interval=``), ``StartPeriod=``
failures not counted, ``Retries=`` consecutive failures → unhealthy, and a unit not healthy within
its start timeout is given up on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from llm_supervisor.supervisor import health_batch
from llm_supervisor.supervisor.events import Events
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.supervisor.state import Health, UnitState
from llm_supervisor.units.model import Unit

FIRST_POLL_S = 0.05


class Watched(Protocol):
    """What the watch reads and changes of the unit's runner."""

    unit: Unit
    state: UnitState
    health: Health
    health_detail: str

    def set_health(self, health: Health, detail: str, latency: float | None) -> None: ...

    def set_state(self, state: UnitState, reason: str) -> None: ...


async def watch_health(runner: Watched, prober: Prober, events: Events,
                       env: dict[str, str] | None) -> str:
    """Probe until the unit must be restarted; return the reason."""
    spec = runner.unit.health
    assert spec is not None
    started = time.monotonic()
    failures = 0
    in_start_period = True
    poll = FIRST_POLL_S
    while True:
        if runner.health == Health.HEALTHY and spec.kind == "tcp" and \
                spec.interval >= health_batch.MIN_INTERVAL_S:
            # Steady state: passing checks run batched, without waking this task; the first
            # that does not pass there is probed for real below, at once.
            await prober.passing.until_not_passing(
                spec.target, spec.interval,
                lambda latency: events.health_checked(runner.unit, True, latency))
        else:
            await asyncio.sleep(poll)
        result = await prober.probe(spec, env, unit=runner.unit)
        events.health_checked(runner.unit, result.ok, result.latency_s)
        elapsed = time.monotonic() - started
        if result.ok:
            failures = 0
            in_start_period = False
            runner.set_health(Health.HEALTHY, result.detail, result.latency_s)
            if runner.state == UnitState.STARTING:
                runner.set_state(UnitState.RUNNING, "healthy")
            poll = spec.interval
            continue
        if in_start_period and elapsed < spec.start_period:
            runner.health_detail = result.detail
        else:
            in_start_period = False
            failures += 1
            runner.health_detail = result.detail
            if failures >= spec.retries:
                runner.set_health(Health.UNHEALTHY, result.detail, result.latency_s)
                return f"unhealthy: {failures} failed checks ({result.detail})"
        if runner.state == UnitState.STARTING and elapsed > max(runner.unit.timeout_start_sec,
                                                                spec.start_period):
            return (f"not healthy within {runner.unit.timeout_start_sec:g}s "
                    f"(last check: {result.detail})")
        poll = spec.interval if runner.health == Health.HEALTHY else min(poll * 2, spec.interval)
