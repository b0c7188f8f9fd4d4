"""One unit's life: the state machine that starts, watches, restarts, repairs and stops it.

States and transitions (README, "CLI")::

    inactive → starting → running (healthy | unhealthy) → stopping → inactive
                   ↘ backoff ↗        ↘ repairing ↗           ↘ failed / skipped

Every transition goes through :meth:`UnitRunner.set_state`, which hands it to the runner's owner
(:class:`RunnerOwner`, the manager): one ``unit_state_changed`` hook call and one event, and on
entering ``failed`` the ``unit_failed`` hook and the stopping of dependents, whatever the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from llm_supervisor.runtimes.base import ExitStatus, Instance, Runtime, RuntimeError_
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.supervisor.backoff import RestartPacer
from llm_supervisor.supervisor.conditions import unmet_condition
from llm_supervisor.supervisor.dependencies import Outcome, Verdict
from llm_supervisor.supervisor.events import Events
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.supervisor.health_watch import watch_health
from llm_supervisor.supervisor.repair_flow import RepairAlreadyRunning, RepairFlow
from llm_supervisor.supervisor.state import TERMINAL, Health, UnitState, check_transition
from llm_supervisor.units.model import Unit

__all__ = ["RepairAlreadyRunning", "RunnerOwner", "UnitRunner"]

log = structlog.get_logger("llm_supervisor.unit_runner")


class RunnerOwner(Protocol):
    """What a runner needs from whoever holds it (the manager), and all it tells it."""

    def environment_for(self, unit: Unit) -> dict[str, str]:
        """The environment the unit's programs get."""

    def condition_runtime(self, unit: Unit) -> str:
        """The runtime ``ConditionRuntime=`` compares with (process or docker)."""

    async def wait_for_dependencies(self, runner: UnitRunner, stop: asyncio.Event) -> Verdict:
        """Wait for the units it runs After=; what to do when a required one cannot come."""

    def records_changed(self) -> None:
        """An instance started or ended: persist what runs (may raise OSError: disk full)."""

    def transition(self, runner: UnitRunner, old: UnitState, new: UnitState, reason: str) -> None:
        """A state change happened; carry its consequences (hooks, events, dependents)."""

    def health_changed(self, runner: UnitRunner, health: Health, detail: str,
                       latency: float | None) -> None:
        """The unit's health changed."""


@dataclass
class _Outcome:
    """How one run ended: the exit status, and why we ended it if we did."""

    status: ExitStatus | None
    reason: str
    failed: bool  # counts as a failure for Restart=on-failure
    # For Restart=on-abnormal: killed by a signal we did not send, or ended by us for failed
    # health (not healthy within the start timeout included). Not: an exit code, a start error.
    abnormal: bool = False


class UnitRunner:
    def __init__(self, unit: Unit, owner: RunnerOwner, runtime: Runtime, log: UnitLog,
                 events: Events, prober: Prober):
        self.unit = unit
        self.owner = owner
        self.runtime = runtime
        self.log = log
        self.events = events
        self.prober = prober
        self.state = UnitState.INACTIVE
        self.health = Health.NONE if unit.health is None else Health.UNKNOWN
        self.health_detail = ""
        self.reason = ""
        self.since = time.time()
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: ExitStatus | None = None
        self.repair_progress: float | None = None
        self.instance: Instance | None = None
        self.wanted = False
        self.pacer = RestartPacer(unit.restart_sec, unit.restart_max_delay_sec,
                                  unit.start_limit_burst, unit.start_limit_interval_sec)
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._recovered: Instance | None = None
        self._stop_reason = "stopped"
        self._env: dict[str, str] | None = None
        self.repairs = RepairFlow(self, events)

    # ------------------------------------------------------------------ public API
    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def ready(self) -> bool:
        """Running, and healthy if it has a check: what After= waits for."""
        return self.state == UnitState.RUNNING and self.health in (Health.NONE, Health.HEALTHY)

    @property
    def settled_down(self) -> bool:
        """Not running and not about to: After= stops waiting for it."""
        return self.state in TERMINAL and (self._task is None or self._task.done())

    def start(self, reason: str = "start requested") -> None:
        """Start (or keep running). A failed unit is cleared, as systemctl reset-failed + start."""
        if self._task is not None and not self._task.done():
            return
        if self.state == UnitState.FAILED:
            self.pacer.reset()
        self.wanted = True
        self._stop_requested = asyncio.Event()
        self._task = asyncio.create_task(self._supervise(reason), name=f"unit:{self.name}")

    async def stop(self, reason: str = "stop requested") -> None:
        self.wanted = False
        self._stop_reason = reason
        self._stop_requested.set()
        task = self._task
        if task is not None and not task.done():
            await task
        elif self.state not in TERMINAL:
            self.set_state(UnitState.INACTIVE, reason)

    def clear_start_limit(self) -> None:
        """Forget past starts: the start limit and the backoff begin again."""
        self.pacer.reset()

    def reset_failures(self) -> None:
        """``reset``: as if the unit had never failed (start limit, backoff, restart count)."""
        self.pacer.reset()
        self.restarts = 0

    def adopt_recovered(self, instance: Instance) -> None:
        """Use an instance a runtime re-adopted after a daemon restart instead of spawning."""
        self._recovered = instance

    def status(self) -> dict[str, Any]:
        return {
            "name": self.unit.short_name,
            "unit": self.name,
            "description": self.unit.description,
            "state": str(self.state),
            "health": str(self.health),
            "health_detail": self.health_detail,
            "pid": self.pid,
            "restarts": self.restarts,
            "since": self.since,
            "last_exit": self.last_exit.as_dict() if self.last_exit else None,
            "reason": self.reason,
            "runtime": self.runtime.name,
            "repair_progress": self.repair_progress,
            "wanted": self.wanted,  # asked to run (started, not stopped)
            "log_dropped_bytes": self.log.dropped_bytes,  # not written to its file: disk full
        }

    # ------------------------------------------------------------------ state machine
    def set_state(self, state: UnitState, reason: str) -> None:
        """The one place a transition happens, checked against the table of allowed transitions
        (:data:`~.state.ALLOWED`); the owner carries its consequences (entering ``failed``: the
        ``unit_failed`` hook once, dependents stopped). Setting the state a unit is already in
        only updates the reason."""
        old = self.state
        check_transition(old, state, self.name)
        self.reason = reason
        if state == old:
            return
        self.state = state
        self.since = time.time()
        self.owner.transition(self, old, state, reason)

    def set_health(self, health: Health, detail: str, latency: float | None) -> None:
        changed = health != self.health
        self.health = health
        self.health_detail = detail
        if changed:
            self.owner.health_changed(self, health, detail, latency)

    async def _supervise(self, reason: str) -> None:
        try:
            await self._supervise_loop(reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not kill the daemon: the unit fails, loudly
            log.exception("internal_error", unit=self.name, error=str(exc))
            await self._stop_after_internal_error()
            self.set_state(UnitState.FAILED, (
                f"internal error: {type(exc).__name__}: {exc}; fix the cause (details in the "
                f"daemon's log), then `llm-supervisorctl start {self.unit.short_name}`"))

    async def _stop_after_internal_error(self) -> None:
        """A unit marked failed must not keep running unsupervised: stop what is left of it
        (its whole process group, or its container)."""
        instance = self.instance
        if instance is None:
            return
        self.log.note("stopping it after an internal error of the supervisor")
        try:
            status = await instance.stop(self.unit.kill_signal, self.unit.timeout_stop_sec)
        except Exception as exc:  # still fail the unit; the error is in the daemon log
            log.exception("internal_error", unit=self.name, error=str(exc))
            status = None
        self.instance = None
        self.pid = None
        self.last_exit = status
        try:
            self.owner.records_changed()
        except Exception as exc:  # a full disk: the next successful save corrects the records
            log.exception("internal_error", unit=self.name, error=str(exc))

    async def _supervise_loop(self, reason: str) -> None:
        while self.wanted:
            # Conditions first (as systemd): a unit whose program is missing says so itself
            # instead of reporting the state of what it waits for.
            unmet = unmet_condition(self.unit, self.owner.condition_runtime)
            if unmet:
                self.set_state(UnitState.SKIPPED, unmet)
                return
            verdict = await self.owner.wait_for_dependencies(self, self._stop_requested)
            if not self.wanted or verdict.outcome == Outcome.STOPPED:
                break
            if verdict.outcome != Outcome.READY:
                # A required unit skipped by its condition skips this one too; one that failed
                # fails it.
                final = (UnitState.SKIPPED if verdict.outcome == Outcome.SKIPPED
                         else UnitState.FAILED)
                self.set_state(final, verdict.reason)
                return
            if self.pacer.limit_hit():
                why = (f"start limit hit: {self.unit.start_limit_burst} starts within "
                       f"{self.unit.start_limit_interval_sec:g}s (last: {self.reason}); fix the "
                       f"cause, then `llm-supervisorctl start {self.unit.short_name}`")
                self.set_state(UnitState.FAILED, why)
                return
            self.pacer.record_start()
            started = time.monotonic()
            outcome = await self._run_once(reason)
            self.pacer.record_exit(time.monotonic() - started)
            if not self.wanted:
                break
            if outcome.status is not None and not outcome.status.clean:
                repaired = await self.repairs.after_exit(outcome.status)
                if repaired is False:
                    return
                if repaired:
                    self.restarts += 1
                    reason = "restart after repair"
                    continue
            if not self._should_restart(outcome):
                final = UnitState.FAILED if outcome.failed else UnitState.INACTIVE
                self.set_state(final, outcome.reason)
                return
            delay = self.pacer.next_delay()
            self.set_state(UnitState.BACKOFF, f"{outcome.reason}; restarting in {delay:.3g}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)
            self.restarts += 1
            reason = f"automatic restart #{self.restarts} ({outcome.reason})"
        self.set_health(Health.NONE if self.unit.health is None else Health.UNKNOWN, "", None)
        if self.state not in TERMINAL:
            self.set_state(UnitState.INACTIVE, self._stop_reason)

    def _should_restart(self, outcome: _Outcome) -> bool:
        policy = self.unit.restart
        if policy == "always":
            return True
        if policy == "on-failure":
            return outcome.failed
        if policy == "on-abnormal":
            return outcome.abnormal
        return False

    async def _run_once(self, reason: str) -> _Outcome:
        self.set_state(UnitState.STARTING, reason)
        self.events.starting(self.unit, self.restarts + 1)
        try:
            env = self.owner.environment_for(self.unit)
            self._env = env  # an exec: health check runs with the unit's environment
            if self._recovered is None:
                for argv in self.unit.exec_start_pre:
                    status = await self.runtime.run_pre(self.unit, argv, env, self.log,
                                                        self.unit.timeout_start_sec)
                    if not status.clean:
                        self.last_exit = status
                        return _Outcome(status, f"ExecStartPre {argv[0]} {status.describe()}", True)
                instance = await self.runtime.start(self.unit, env, self.log)
                self.log.note(f"started (pid {instance.pid or instance.ident})")
            else:
                instance, self._recovered = self._recovered, None
                self.log.note(f"re-adopted {instance.ident}")
        except RuntimeError_ as exc:
            self.log.note(f"could not start: {exc}")
            return _Outcome(None, f"could not start: {exc}", True)
        self.instance = instance
        self.pid = instance.pid
        self.owner.records_changed()
        self.events.started(self.unit, instance.pid)
        if self.unit.health is None:
            self.set_state(UnitState.RUNNING, "started")
        return await self._watch(instance)

    async def _watch(self, instance: Instance) -> _Outcome:
        exited = asyncio.create_task(instance.wait())
        stop = asyncio.create_task(self._stop_requested.wait())
        watchers: set[asyncio.Task[Any]] = {exited, stop}
        health = None
        if self.unit.health is not None:
            health = asyncio.create_task(watch_health(self, self.prober, self.events,
                                                      self._env))
            watchers.add(health)
        try:
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop, health):
                if task is not None and not task.done():
                    task.cancel()
        if exited in done:
            status = exited.result()
            outcome = _Outcome(status, status.describe(), not status.clean, status.abnormal)
        else:
            if health is not None and health in done:
                why = health.result()
                self.log.note(why)
                self.set_state(UnitState.STOPPING, why)
            else:
                why = self._stop_reason
                self.set_state(UnitState.STOPPING, why)
            status = await instance.stop(self.unit.kill_signal, self.unit.timeout_stop_sec)
            exited.cancel()
            unhealthy = health is not None and health in done
            outcome = _Outcome(status, why, unhealthy, unhealthy)
        self._after_exit(outcome.status)
        return outcome

    def _after_exit(self, status: ExitStatus | None) -> None:
        self.instance = None
        self.pid = None
        self.last_exit = status
        self.owner.records_changed()
        if self.unit.health is not None:
            self.set_health(Health.UNKNOWN, self.health_detail, None)
        tail = self.log.last(50)
        self.log.note(f"{status.describe() if status else 'ended'}")
        self.events.exited(self.unit, status.code if status else None,
                           status.signal if status else None, tail)

    # ------------------------------------------------------------------ repairs (.repair_flow)
    @property
    def repair_running(self) -> bool:
        return self.repairs.running

    @property
    def repair_lock(self) -> asyncio.Lock:
        """Held while a repair runs; a reload holds every unit's (:mod:`.reload_guard`)."""
        return self.repairs.lock

    async def repair_by_hand(self, verify_only: bool = False) -> dict[str, Any] | None:
        """``llm-supervisorctl repair`` (:meth:`RepairFlow.by_hand`)."""
        return await self.repairs.by_hand(verify_only)
