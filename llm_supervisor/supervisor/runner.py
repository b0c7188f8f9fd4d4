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
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import pluggy
import structlog

from llm_supervisor.plugins.types import Diagnosis, RepairResult
from llm_supervisor.runtimes.base import ExitStatus, Instance, Runtime, RuntimeError_
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.supervisor.backoff import RestartPacer
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.supervisor.state import TERMINAL, Health, UnitState
from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.unit_runner")


class RunnerOwner(Protocol):
    """What a runner needs from whoever holds it (the manager), and all it tells it."""

    def environment_for(self, unit: Unit) -> dict[str, str]:
        """The environment the unit's programs get."""

    def condition_runtime(self, unit: Unit) -> str:
        """The runtime ``ConditionRuntime=`` compares with (process or docker)."""

    async def wait_for_dependencies(self, runner: UnitRunner, stop: asyncio.Event) -> str | None:
        """Wait for the units it runs After=; a reason to fail when a required one cannot come."""

    def records_changed(self) -> None:
        """An instance started or ended: persist what runs (may raise OSError: disk full)."""

    def transition(self, runner: UnitRunner, old: UnitState, new: UnitState, reason: str) -> None:
        """A state change happened; carry its consequences (hooks, events, dependents)."""

    def health_changed(self, runner: UnitRunner, health: Health, detail: str,
                       latency: float | None) -> None:
        """The unit's health changed."""

    def repair_finished(self, runner: UnitRunner, diagnosis: Diagnosis,
                        result: RepairResult) -> None:
        """A repair (automatic or by hand) ended with ``result``."""


class RepairAlreadyRunning(Exception):
    """A second repair of the same unit was asked for while one runs (the control API: 409)."""

    def __init__(self, unit: str):
        super().__init__(f"a repair of {unit} is already running; wait for it to finish "
                         f"(`llm-supervisorctl status {unit}` shows its progress)")


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
                 hooks: pluggy.HookRelay, prober: Prober):
        self.unit = unit
        self.owner = owner
        self.runtime = runtime
        self.log = log
        self.hooks = hooks
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
        # One repair per unit at a time: two would delete each other's work directories. A reload
        # holds it too (supervisor/reload_guard.py).
        self._repair_lock = self.repair_lock = asyncio.Lock()

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
            "log_dropped_bytes": self.log.dropped_bytes,  # not written to its file: disk full
        }

    # ------------------------------------------------------------------ state machine
    def set_state(self, state: UnitState, reason: str) -> None:
        """The one place a transition happens; the owner carries its consequences (entering
        ``failed``: the ``unit_failed`` hook once, dependents stopped). Setting the state a unit
        is already in only updates the reason."""
        old = self.state
        self.reason = reason
        if state == old:
            return
        self.state = state
        self.since = time.time()
        self.owner.transition(self, old, state, reason)

    def _set_health(self, health: Health, detail: str, latency: float | None) -> None:
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
            unmet = self._unmet_condition()
            if unmet:
                self.set_state(UnitState.SKIPPED, unmet)
                return
            blocker = await self.owner.wait_for_dependencies(self, self._stop_requested)
            if not self.wanted:
                break
            if blocker is not None:
                # A required unit skipped by its condition skips this one too; one that failed
                # fails it.
                if blocker.endswith(f"is {UnitState.SKIPPED}"):
                    self.set_state(UnitState.SKIPPED, blocker)
                    return
                self.set_state(UnitState.FAILED, blocker)
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
                repaired = await self._try_repair(outcome.status)
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
        self._set_health(Health.NONE if self.unit.health is None else Health.UNKNOWN, "", None)
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

    def _unmet_condition(self) -> str | None:
        hint = f"; {self.unit.install_hint}" if self.unit.install_hint else ""
        for condition in self.unit.conditions:
            if condition.kind == "runtime":
                actual = self.owner.condition_runtime(self.unit)
                if (actual == condition.value) == condition.negate:
                    wanted = f"{'!' if condition.negate else ''}{condition.value}"
                    return (f"condition unmet: the runtime is {actual} (ConditionRuntime={wanted};"
                            " LLM_SUPERVISOR_RUNTIME or Runtime= picks it)")
                continue
            if condition.kind == "path_exists":
                what = f"path {condition.value} {'exists' if condition.negate else 'does not exist'}"
            else:
                what = (f"{condition.value} is installed" if condition.negate else
                        f"{condition.value} not found on PATH")
            if condition.present_on_host() == condition.negate:
                return f"condition unmet: {what}{hint}"
        return None

    async def _run_once(self, reason: str) -> _Outcome:
        self.set_state(UnitState.STARTING, reason)
        self.hooks.unit_starting(unit=self.unit, attempt=self.restarts + 1)
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
        self.hooks.unit_started(unit=self.unit, pid=instance.pid)
        if self.unit.health is None:
            self.set_state(UnitState.RUNNING, "started")
        return await self._watch(instance)

    async def _watch(self, instance: Instance) -> _Outcome:
        exited = asyncio.create_task(instance.wait())
        stop = asyncio.create_task(self._stop_requested.wait())
        watchers: set[asyncio.Task[Any]] = {exited, stop}
        health = None
        if self.unit.health is not None:
            health = asyncio.create_task(self._monitor_health())
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
            self._set_health(Health.UNKNOWN, self.health_detail, None)
        tail = self.log.last(50)
        self.log.note(f"{status.describe() if status else 'ended'}")
        self.hooks.unit_exited(unit=self.unit, exit_code=status.code if status else None,
                               signal=status.signal if status else None, log_tail=tail)

    async def _monitor_health(self) -> str:
        """Probe until the unit must be restarted; return the reason."""
        spec = self.unit.health
        assert spec is not None
        started = time.monotonic()
        failures = 0
        in_start_period = True
        poll = 0.05  # quick first probes while starting, then the configured interval
        while True:
            await asyncio.sleep(poll)
            result = await self.prober.probe(spec, self._env, unit=self.unit)
            self.hooks.unit_health_checked(unit=self.unit, ok=result.ok,
                                           latency_s=result.latency_s)
            elapsed = time.monotonic() - started
            if result.ok:
                failures = 0
                in_start_period = False
                self._set_health(Health.HEALTHY, result.detail, result.latency_s)
                if self.state == UnitState.STARTING:
                    self.set_state(UnitState.RUNNING, "healthy")
                poll = spec.interval
                continue
            if in_start_period and elapsed < spec.start_period:
                self.health_detail = result.detail
            else:
                in_start_period = False
                failures += 1
                self.health_detail = result.detail
                if failures >= spec.retries:
                    self._set_health(Health.UNHEALTHY, result.detail, result.latency_s)
                    return f"unhealthy: {failures} failed checks ({result.detail})"
            if self.state == UnitState.STARTING and elapsed > max(self.unit.timeout_start_sec,
                                                                   spec.start_period):
                return (f"not healthy within {self.unit.timeout_start_sec:g}s "
                        f"(last check: {result.detail})")
            poll = spec.interval if self.health == Health.HEALTHY else min(poll * 2, spec.interval)

    async def _try_repair(self, status: ExitStatus) -> bool | None:
        """None: no plugin recognised the failure. True: repaired, restart now. False: gave up."""
        if self._repair_lock.locked():
            return None  # a repair by hand is under way; it restarts the unit itself
        diagnosis = self.hooks.diagnose_failure(unit=self.unit, exit_code=status.code,
                                                log_tail=self.log.last(200))
        if diagnosis is None:
            return None
        async with self._repair_lock:
            result = await self._run_repair(diagnosis)
        if result is None:
            return None
        if result.ok:
            return True
        if result.give_up:
            self.set_state(UnitState.FAILED, f"repair gave up: {result.message}")
            return False
        return None

    async def _run_repair(self, diagnosis: Diagnosis) -> RepairResult | None:
        """State ``repairing`` while the ``repair_unit`` hook runs in a worker thread, with its
        progress shown in status; returns the plugin's RepairResult (None: nobody repairs)."""
        self.set_state(UnitState.REPAIRING, diagnosis.summary)
        self.repair_progress = 0.0
        loop = asyncio.get_running_loop()

        def progress(fraction: float, message: str = "") -> None:
            self.repair_progress = fraction
            if message:
                loop.call_soon_threadsafe(self._note_repair_progress, message)

        try:
            result = await asyncio.to_thread(self._repair_hook, diagnosis, progress)
        finally:
            self.repair_progress = None
        if result is not None:
            self.owner.repair_finished(self, diagnosis, result)
            if result.ok:
                self.pacer.reset()
        return result

    def _repair_hook(self, diagnosis: Diagnosis, progress: Any) -> RepairResult | None:
        return self.hooks.repair_unit(unit=self.unit, diagnosis=diagnosis, progress=progress)

    def _note_repair_progress(self, message: str) -> None:
        self.reason = message
        self.log.note(f"repair: {message}")

    @property
    def repair_running(self) -> bool:
        return self._repair_lock.locked()

    async def repair_by_hand(self, verify_only: bool = False) -> dict[str, Any] | None:
        """``llm-supervisorctl repair``: stop, repair through the plugins, start again (the old
        ``fix_model_service.sh``). With ``verify_only`` nothing is stopped or changed.

        Raises :class:`RepairAlreadyRunning` at once (no queueing) while another repair of this
        unit, automatic or by hand, runs."""
        diagnosis = Diagnosis(kind="manual", summary="repair requested by hand",
                              details={"verify_only": verify_only})
        if verify_only:
            result = await asyncio.to_thread(self._repair_hook, diagnosis,
                                             lambda fraction, message="": None)
            return None if result is None else _as_dict(result)
        if self._repair_lock.locked():
            raise RepairAlreadyRunning(self.unit.short_name)
        async with self._repair_lock:
            # Taken without yielding, before stop(): no automatic repair can start in between.
            await self.stop("stopped for repair")
            result = await self._run_repair(diagnosis)
        if result is None:
            self.set_state(UnitState.INACTIVE, "no plugin can repair this unit")
            return None
        if result.ok:
            self.start("restart after repair")
        else:
            self.set_state(UnitState.FAILED, f"repair failed: {result.message}")
        return _as_dict(result)


def _as_dict(result: RepairResult) -> dict[str, Any]:
    return asdict(result)
