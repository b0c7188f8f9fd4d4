"""Rolling restart: the instances of a replicated unit, one at a time, without losing a request.

For each instance (``model-service``, ``model-service@2``, ...):

1. wait until another instance is ready, so the gateway always has one to send to;
2. take the instance out of the gateway's rotation: SIGUSR1 makes our model server say
   ``draining`` in its health (still 200 for the supervisor; Caddy's active check of replicas
   wants ``ready``), and :class:`Rotation` returns once the gateway acts on it (Caddy: one more
   check; Traefik: a config without the instance. Caddy 2.6 cancels the requests in flight on
   every config load, so its config never changes during a roll);
3. drain: wait until the model server's health shows no request in flight for a moment (so a
   request the gateway had already forwarded is counted too);
4. stop it and start it again (``step``: a plain restart, or a reload's swap to the new unit);
5. wait until it is ready (healthy), put it back into rotation, next.

``llm-supervisorctl restart --rolling UNIT`` and ``POST /units/NAME/restart?rolling=1`` use it; so
does ``reload`` for a changed replicated unit. A unit without replicas goes through the same
steps (drained first), which cannot avoid its outage: that needs a second instance.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import httpx
import structlog

from llm_supervisor.supervisor.rotation import Rotation
from llm_supervisor.supervisor.runner import UnitRunner
from llm_supervisor.supervisor.state import UnitState
from llm_supervisor.units.loader import LoadResult
from llm_supervisor.units.model import Unit
from llm_supervisor.units.replicas import instances

log = structlog.get_logger("llm_supervisor.rolling")

DRAIN_TIMEOUT_S = 60.0  # longest generation we wait for before stopping anyway
DRAIN_QUIET_S = 0.3  # two idle readings this far apart count as drained
POLL_S = 0.1

Step = Callable[[str], Awaitable[UnitRunner]]


class RollingOwner(Protocol):
    """What a rolling restart needs from the manager."""

    runners: dict[str, UnitRunner]
    rotation: Rotation
    loaded: LoadResult

    def resolve(self, name: str) -> str: ...


class RollingRestartFailed(RuntimeError):
    """An instance did not come back; the instances after it were left running as they were."""


async def rolling_restart(owner: RollingOwner, name: str, step: Step,
                          reason: str = "rolling restart") -> list[str]:
    """Restart every instance of ``name``'s group one at a time; returns their names."""
    names = [n for n in instances(owner.loaded.units, owner.resolve(name)) if n in owner.runners]
    return await roll(owner, names, step, reason)


async def roll(owner: RollingOwner, names: list[str], step: Step, reason: str) -> list[str]:
    """Restart ``names`` (instances of one group) one at a time with ``step``."""
    async with owner.rotation.rolling:
        for current in names:
            await restart_one(owner, current, names, step, reason)
    return names


async def rolling_repair(owner: RollingOwner, name: str, repair: Step, restart: Step
                         ) -> list[str]:
    """``repair`` with replicas: the shared model directory is repaired once, through ``name``
    drained out of the gateway like a rolling restart's step; then the other instances restart
    one at a time onto the repaired files. Returns the instances handled."""
    full = owner.resolve(name)
    group = [n for n in instances(owner.loaded.units, full) if n in owner.runners]
    async with owner.rotation.rolling:
        await restart_one(owner, full, group, repair, "repair requested")
        for other in (n for n in group if n != full):
            await restart_one(owner, other, group, restart, "restart after repair")
    return group


def rolled_on_reload(changed: list[str], units: Mapping[str, Unit],
                     runners: Mapping[str, UnitRunner]) -> list[str]:
    """The changed units that ``reload`` replaces one at a time instead of all at once: wanted
    instances of a group that has more than one (instance 1 first)."""
    rolled = [n for n in changed if n in runners and runners[n].wanted
              and len(instances(units, n)) > 1]
    ordered: list[str] = []
    for name in rolled:
        ordered += [m for m in instances(units, name) if m in rolled and m not in ordered]
    return ordered


async def restart_one(owner: RollingOwner, name: str, group: list[str], step: Step,
                      reason: str) -> None:
    runner = owner.runners[name]
    others = [owner.runners[n] for n in group if n != name and n in owner.runners]
    if others and runner.ready:
        timeout = max(r.unit.timeout_start_sec for r in others)
        if not await _wait(lambda: any(r.ready for r in others), timeout):
            log.warning("rolling_no_other_instance_ready", unit=name,
                        hint="restarting anyway: requests wait in the gateway meanwhile")
    log.info("rolling_take_out", unit=name, reason=reason)
    if runner.state == UnitState.RUNNING:
        await announce_draining(runner)
    await owner.rotation.take_out(name)
    try:
        if runner.state == UnitState.RUNNING:
            drained = await drain(runner.unit)
            log.info("rolling_drained", unit=name, drained=drained)
        runner = await step(name)
        if not await _wait(lambda: runner.ready or runner.state in (UnitState.FAILED,
                                                                      UnitState.SKIPPED),
                           runner.unit.timeout_start_sec) or not runner.ready:
            raise RollingRestartFailed(
                f"{runner.unit.short_name} did not become ready after its restart "
                f"({runner.state}: {runner.reason}); the instances after it were not restarted. "
                f"See `llm-supervisorctl logs {runner.unit.short_name}`")
        log.info("rolling_ready", unit=name)
    finally:
        await owner.rotation.put_back(name)


async def drain(unit: Unit, timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Wait until the unit's model server has no request in flight (running or queued). True
    when drained; False on timeout. A unit that does not say (no http health check, not our
    model server, not answering) counts as drained after one quiet period."""
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            busy = await in_flight(client, unit) or 0
            now = time.monotonic()
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= DRAIN_QUIET_S:
                return True
            await asyncio.sleep(POLL_S)
    return False


async def announce_draining(runner: UnitRunner) -> bool:
    """SIGUSR1 to our model server (recognised by ``inflight`` in its health; any other program
    could die of the signal): from then on its health says ``draining`` and the gateway sends
    it nothing new. True when sent."""
    if runner.pid is None:
        return False
    async with httpx.AsyncClient(timeout=2.0) as client:
        if await in_flight(client, runner.unit) is None:
            return False
    try:
        os.kill(runner.pid, signal.SIGUSR1)
    except OSError as exc:
        log.warning("rolling_drain_signal_failed", unit=runner.name, error=str(exc))
        return False
    return True


async def in_flight(client: httpx.AsyncClient, unit: Unit) -> int | None:
    """Requests in flight (running or queued) according to the model server's health, counted
    live (the ``llm_requests_running`` gauge of /metrics can keep its last value once the batch
    is empty). None when the unit is not our model server or does not answer."""
    health = unit.health
    if health is None or health.kind != "http":
        return None
    try:
        response = await client.get(health.target)
        value = response.json().get("inflight")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int | float) else None


async def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True
