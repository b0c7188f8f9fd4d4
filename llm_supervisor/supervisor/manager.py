"""The manager: which units exist, which are wanted, in what order they start and stop.

Per-unit life is in :mod:`unit_runner`; this module holds them together: loading and reloading
unit files, targets and dependencies, the environment handed to programs, the records that let a
restarted daemon find what its predecessor left running, and the fan-out of every event to hooks
and control-socket listeners.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import structlog

from llm_supervisor.config import Settings
from llm_supervisor.plugins.manager import Plugins
from llm_supervisor.plugins.types import Diagnosis, RepairResult
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.runtimes.process.identity import OWNER_MARKER, UNIT_MARKER
from llm_supervisor.runtimes.selection import RuntimeSelector
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.supervisor.records import RECORDS_NAME, load_records
from llm_supervisor.supervisor.records_writer import RecordsWriter
from llm_supervisor.supervisor.reload_guard import repairs_paused
from llm_supervisor.supervisor.resources import ResourceSampler
from llm_supervisor.supervisor.rolling import (
    RollingRestartFailed,
    roll,
    rolled_on_reload,
    rolling_repair,
    rolling_restart,
)
from llm_supervisor.supervisor.rotation import Rotation
from llm_supervisor.supervisor.runner import UnitRunner
from llm_supervisor.supervisor.state import Health, UnitState
from llm_supervisor.supervisor.unit_env import pass_env_patterns, passed_through
from llm_supervisor.units import graph
from llm_supervisor.units.checks import cycle_error
from llm_supervisor.units.env_file import read_env_file
from llm_supervisor.units.loader import LoadResult, instantiate, load_directory
from llm_supervisor.units.model import Unit, normalise_name
from llm_supervisor.units.replicas import add_replicas

log = structlog.get_logger("llm_supervisor.manager")


class UnitNotFound(KeyError):
    pass


class Manager:
    """Holds the units' runners and is their :class:`RunnerOwner`: every transition a runner makes
    comes back here, and entering ``failed`` carries its consequences (:meth:`transition`)."""

    def __init__(self, settings: Settings, plugins: Plugins):
        self.settings = settings
        self.plugins = plugins
        self.prober = Prober()
        self.resources = ResourceSampler()  # CPU/memory per unit (status, metrics)
        self.runtimes = RuntimeSelector(settings)
        self.rotation = Rotation()  # units the gateway must not send to (rolling restarts)
        self.loaded = LoadResult()
        self.runners: dict[str, UnitRunner] = {}
        self.target: str = settings.default_target
        self.target_error = ""  # the last target asked for has no unit file: nothing started
        self.cycles: list[list[str]] = []
        self.purge_on_exit = False
        self._changed = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._cascades: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._records_path = settings.state_dir / RECORDS_NAME
        self._previous_records: dict[str, dict[str, Any]] = self._read_records()
        self._records = RecordsWriter(self._records_path, lambda: {  # retries on a full disk
            name: r.instance.record() for name, r in self.runners.items()
            if r.instance is not None})

    # ------------------------------------------------------------------ loading
    def _load(self) -> LoadResult:
        result = load_directory(self.settings.units_dir, self.settings.expansion_vars())
        add_replicas(result, self.settings.expansion_vars(), self.settings.model_replicas)
        for extra in self.plugins.hook.add_units():
            for unit in extra:
                result.units.setdefault(unit.name, unit)
        for error in result.errors:
            log.error("unit_file_error", **error.as_dict())
        return result

    def load(self) -> None:
        self.loaded = self._load()
        for unit in self.loaded.units.values():
            if unit.is_service:
                self._add_runner(unit)

    def _add_runner(self, unit: Unit) -> UnitRunner:
        log_path = self.settings.log_dir / f"{unit.short_name}.log"
        unit_log = UnitLog(log_path, self.settings.log_max_bytes, self.settings.log_backups)
        runner = UnitRunner(unit, self, self.runtimes.for_unit(unit), unit_log,
                            self.plugins.hook, self.prober)
        self.runners[unit.name] = runner
        return runner

    def resolve(self, name: str) -> str:
        full = normalise_name(name)
        if full in self.loaded.units:
            return full
        if instantiate(self.loaded, full, self.settings.expansion_vars()) is not None:
            self._add_runner(self.loaded.units[full])
            return full
        raise UnitNotFound(name)

    def runner(self, name: str) -> UnitRunner:
        full = self.resolve(name)
        if full not in self.runners:
            raise UnitNotFound(name)
        return self.runners[full]

    # ------------------------------------------------------------------ starting & stopping
    def transaction(self, root: str) -> tuple[set[str], list[list[str]]]:
        """The services ``root`` pulls in, minus units caught in an ordering cycle (those are
        marked failed); returns the services and the cycles found."""
        names = graph.pulled_in(self.loaded.units, root)
        subset = {n: self.loaded.units[n] for n in names}
        cycles = []
        while cycle := graph.find_cycle(graph.ordering_edges(subset)):
            cycles.append(cycle)
            log.error("dependency_cycle", cycle=cycle)
            for name in cycle:
                subset.pop(name, None)
                if name in self.runners:
                    self.runners[name].set_state(UnitState.FAILED,
                                                 str(graph.DependencyCycleError(cycle)))
        services = {n for n in subset if self.loaded.units[n].is_service}
        return services, cycles

    async def start_target(self, target: str | None = None) -> None:
        self.target = normalise_name(target or self.settings.default_target)
        if self.target not in self.loaded.units:
            self._report_missing_target()
            raise UnitNotFound(self.target)
        self.target_error = ""
        try:
            services, self.cycles = self.transaction(self.target)
        except Exception as exc:  # a unit-graph bug must not take the daemon down: report it
            log.exception("target_start_failed", target=self.target, error=str(exc))
            self._notify({"type": "error", "target": self.target, "message": str(exc)})
            return
        for name in sorted(services):
            self.runners[name].start(f"pulled in by {self.target}")

    def _report_missing_target(self) -> None:
        """Say it where the user looks: ``/ping`` (``start --wait``) and the reason of every
        unit WantedBy= the missing target."""
        self.target_error = (
            f"{self.target} has no unit file in {self.settings.units_dir}, so nothing was "
            f"started; create it (a [Unit] section is enough) and `llm-supervisorctl reload`, "
            f"or start another target")
        log.error("target_not_found", target=self.target, message=self.target_error)
        self._notify({"type": "error", "target": self.target, "message": self.target_error})
        for runner in self.runners.values():
            if self.target in runner.unit.wanted_by and not runner.wanted:
                runner.set_state(runner.state, f"not started: {self.target_error}")

    def start_unit(self, name: str) -> list[str]:
        """Start a unit (or target) and what it Requires=/Wants=; returns the names started."""
        full = self.resolve(name)
        services, cycles = self.transaction(full)
        if cycles:
            raise graph.DependencyCycleError(cycles[0])
        for service in sorted(services):
            self.runners[service].start("start requested" if service == full else
                                        f"pulled in by {full}")
        return sorted(services)

    def _dependents(self, name: str) -> set[str]:
        """Units that Requires= ``name`` (transitively)."""
        found: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            for runner in self.runners.values():
                if current in runner.unit.requires and runner.name not in found:
                    found.add(runner.name)
                    stack.append(runner.name)
        return found

    async def stop_units(self, names: set[str], reason: str) -> None:
        """Stop ``names`` in reverse start order: a unit stops before what it runs after."""
        subset = {n: self.loaded.units[n] for n in names if n in self.runners}
        try:
            layers = graph.start_layers(subset)
        except graph.DependencyCycleError:
            layers = [sorted(subset)]
        for layer in reversed(layers):
            await asyncio.gather(*(self.runners[n].stop(reason) for n in layer))

    async def stop_unit(self, name: str, reason: str = "stop requested") -> list[str]:
        full = self.resolve(name)
        if full.endswith(".target"):
            names, _ = self.transaction(full)
        else:
            names = {full} | self._dependents(full)
        await self.stop_units(names, reason)
        return sorted(names)

    async def restart_unit(self, name: str) -> None:
        full = self.resolve(name)
        runner = self.runners[full]
        await runner.stop("restart requested")
        self.start_unit(full)

    async def restart_rolling(self, name: str) -> list[str]:
        """Restart ``name``'s instances one at a time, each drained and out of the gateway's
        rotation meanwhile (:mod:`rolling`); returns the instances restarted."""

        async def step(instance: str) -> UnitRunner:
            await self.restart_unit(instance)
            return self.runners[instance]

        return await rolling_restart(self, name, step)

    async def repair_rolling(self, name: str) -> dict[str, Any] | None:
        """``repair`` of a unit with replicas (:func:`rolling.rolling_repair`); returns the
        repair's result (None: no plugin repairs it)."""
        outcome: dict[str, Any] = {}

        async def repair(instance: str) -> UnitRunner:
            outcome["result"] = await self.runners[instance].repair_by_hand()
            return self.runners[instance]

        async def restart(instance: str) -> UnitRunner:
            await self.restart_unit(instance)
            return self.runners[instance]

        try:
            await rolling_repair(self, name, repair, restart)
        except RollingRestartFailed:
            result = outcome.get("result")
            if result is not None and result.get("ok"):
                raise
        return outcome.get("result")  # failed or none: the instance says why (its reason)

    async def stop_all(self, reason: str = "daemon shutting down") -> None:
        await self.stop_units(set(self.runners), reason)

    async def wait_for_dependencies(self, runner: UnitRunner, stop: asyncio.Event) -> str | None:
        """Wait until every After= unit that is coming up is ready. Returns a reason to fail when
        a Requires= unit failed or was skipped, else None."""
        unit = runner.unit
        announced = False
        while not stop.is_set():
            waiting = []
            for dep in unit.after:
                other = self.runners.get(dep)
                if other is None or other.ready:
                    continue
                if other.settled_down or not other.wanted:
                    if dep in unit.requires and other.state in (UnitState.FAILED,
                                                                UnitState.SKIPPED):
                        return f"required unit {other.unit.short_name} is {other.state}"
                    continue
                waiting.append(other.unit.short_name)
            for dep in unit.requires:
                other = self.runners.get(dep)
                if other is None:
                    return f"required unit {dep} does not exist"
                if other.state in (UnitState.FAILED, UnitState.SKIPPED) and dep not in waiting:
                    return f"required unit {other.unit.short_name} is {other.state}"
            if not waiting:
                return None
            if not announced:
                runner.set_state(UnitState.STARTING, "waiting for " + ", ".join(waiting))
                announced = True
            changed = self._changed
            stop_wait = asyncio.ensure_future(stop.wait())
            change_wait = asyncio.ensure_future(changed.wait())
            await asyncio.wait({stop_wait, change_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            change_wait.cancel()
        return None

    async def reset(self) -> dict[str, Any]:
        """``llm-supervisorctl reset`` (the old reset_and_run.sh): stop everything, remove what
        the runtimes own, clear failures, bring the target up again."""
        await self.stop_all("reset requested")
        removed = await self.runtimes.remove_owned(purge=False)
        for runner in self.runners.values():
            runner.pacer.reset()
            runner.restarts = 0
        await self.start_target(self.target)
        return {"removed": removed, "target": self.target}

    async def purge(self) -> list[str]:
        """After the units stopped: remove containers, volumes and caches we own, and our logs."""
        removed = await self.runtimes.remove_owned(purge=True)
        for runner in self.runners.values():
            runner.log.close()
            for path in runner.log.path.parent.glob(runner.log.path.name + "*"):
                path.unlink(missing_ok=True)
                removed.append(str(path))
        return removed

    # ------------------------------------------------------------------ reload
    async def reload(self) -> dict[str, Any]:
        """Re-read unit files; restart only units whose definition changed (supervisord's
        ``reload`` restarts everything). A file that no longer parses keeps its old unit.

        Reloads run one at a time (SIGHUP and ``POST /reload`` share the lock): two at once
        would both stop and remove the same changed units."""
        async with self._reload_lock, repairs_paused(self.runners.values()):
            return await self._reload()

    async def _reload(self) -> dict[str, Any]:
        fresh = self._load()
        old_units = self.loaded.units
        broken_paths = {Path(e.path) for e in fresh.errors}
        for name, unit in old_units.items():
            if name not in fresh.units and unit.path in broken_paths:
                fresh.units[name] = unit
        added = sorted(n for n in fresh.units if n not in old_units)
        removed = sorted(n for n in old_units if n not in fresh.units)
        changed = sorted(n for n in fresh.units if n in old_units
                         and fresh.units[n].fingerprint() != old_units[n].fingerprint())
        for name in fresh.units:
            if name not in added and name not in changed:
                fresh.units[name] = old_units[name]
        # Changed replicas are replaced one at a time at the end (rolling), not stopped here.
        rolled = rolled_on_reload(changed, fresh.units, self.runners)
        affected = {n for n in (*removed, *changed) if n in self.runners} - set(rolled)
        was_wanted = {n for n in affected if self.runners[n].wanted}
        await self.stop_units(affected, "unit file changed")
        for name in affected:
            self.runners.pop(name).log.close()
        self.loaded = fresh
        for name in (*changed, *added):
            if fresh.units[name].is_service and name not in rolled:
                self._add_runner(fresh.units[name])
        wanted, self.cycles = self.transaction(self.target)
        for name in sorted((was_wanted - set(removed)) | (set(added) & wanted)):
            self.runners[name].start("unit file changed")
        summary = {"changed": changed, "added": added, "removed": removed,
                   "errors": [str(e) for e in fresh.errors]}
        log.info("reloaded", **summary)
        self._notify({"type": "reload", **summary})
        if self.target_error and self.target in fresh.units:  # the missing target file is there
            await self.start_target(self.target)
        if rolled:
            try:
                await roll(self, rolled, self._replace_runner, "unit file changed")
            except RollingRestartFailed as exc:
                summary["errors"].append(str(exc))
        return summary

    async def _replace_runner(self, name: str) -> UnitRunner:
        """A reload's rolling step: stop the old definition of ``name``, start the new one."""
        old = self.runners[name]
        await old.stop("unit file changed")
        old.log.close()
        runner = self._add_runner(self.loaded.units[name])
        runner.start("unit file changed")
        return runner

    def condition_runtime(self, unit: Unit) -> str:
        return self.runtimes.condition_runtime(unit)

    # ------------------------------------------------------------------ environment
    def environment_for(self, unit: Unit) -> dict[str, str]:
        """What the unit's program gets; the order and the allow-list are in :mod:`unit_env`."""
        env = passed_through(os.environ, pass_env_patterns(self.settings.unit_env_passthrough))
        env.update(self.settings.expansion_vars())
        for path, optional in unit.environment_files:
            env.update(read_env_file(Path(path), optional))
        env.update(unit.environment)
        env[UNIT_MARKER] = unit.name
        env[OWNER_MARKER] = str(self.settings.state_dir.resolve())
        return env

    # ------------------------------------------------------------------ records
    def _read_records(self) -> dict[str, dict[str, Any]]:
        return load_records(self._records_path)

    def records_changed(self) -> None:
        self._records.save()

    async def recover_previous(self) -> None:
        """Clean up (process runtime) or re-adopt (docker) what a previous daemon left."""
        for name, record in self._previous_records.items():
            runner = self.runners.get(name)
            if runner is None:
                continue
            # The record says which runtime made it: a unit moved from docker to process (or
            # back) still has its old instance cleaned up by the runtime that owns it.
            runtime = (self.runtimes.docker() if record.get("runtime") == "docker"
                       else self.runtimes.process)
            try:
                instance = await runtime.recover(runner.unit, record, runner.log)
                if instance is not None and runtime is runner.runtime:
                    runner.adopt_recovered(instance)
                elif instance is not None:
                    await instance.stop(runner.unit.kill_signal, runner.unit.timeout_stop_sec)
            except Exception as exc:  # one unit's leftovers must not stop the daemon starting
                log.error("recover_failed", unit=name, record=record, error=str(exc),
                          error_type=type(exc).__name__)
                runner.log.note(f"could not recover what the previous daemon left: {exc}")
        self._previous_records = {}
        self.records_changed()

    # ------------------------------------------------------------------ events
    def transition(self, runner: UnitRunner, old: UnitState, new: UnitState,
                   reason: str) -> None:
        """Every state change of every unit. Entering ``failed``, whatever the cause, fires
        ``unit_failed`` and stops (and fails) the wanted units that Requires= it."""
        self.plugins.hook.unit_state_changed(unit=runner.unit, old=str(old), new=str(new),
                                             reason=reason)
        self._notify({"type": "state", "unit": runner.unit.short_name, "from": str(old),
                      "to": str(new), "reason": reason})
        if new != UnitState.FAILED:
            return
        self.plugins.hook.unit_failed(unit=runner.unit, reason=reason)
        for name in sorted(self._dependents(runner.name)):
            dependent = self.runners[name]
            if dependent.wanted:
                task = asyncio.ensure_future(self._fail_dependent(dependent, runner))
                self._cascades.add(task)
                task.add_done_callback(self._cascades.discard)

    async def _fail_dependent(self, dependent: UnitRunner, cause: UnitRunner) -> None:
        why = f"required unit {cause.unit.short_name} is failed"
        await dependent.stop(why)
        dependent.set_state(UnitState.FAILED, why)

    def health_changed(self, runner: UnitRunner, health: Health, detail: str,
                       latency: float | None) -> None:
        self.plugins.hook.unit_health_changed(unit=runner.unit, health=str(health),
                                              detail=detail, latency_s=latency)
        self._notify({"type": "health", "unit": runner.unit.short_name, "health": str(health),
                      "detail": detail})

    def repair_finished(self, runner: UnitRunner, diagnosis: Diagnosis,
                        result: RepairResult) -> None:
        log.info("repair_finished", unit=runner.name, diagnosis=diagnosis.kind, ok=result.ok,
                 message=result.message)
        self._notify({"type": "repair", "unit": runner.unit.short_name, "ok": result.ok,
                      "message": result.message})

    def _notify(self, event: dict[str, Any]) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for queue in self._listeners:
            if queue.qsize() < 1000:
                queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(queue)

    # ------------------------------------------------------------------ status
    def unit_status(self, runner: UnitRunner) -> dict[str, Any]:
        """The runner's status with its CPU and memory use (``cpu_percent``, ``memory_bytes``)."""
        return {**runner.status(), **self.resources.usage(runner)}

    def status(self) -> list[dict[str, Any]]:
        return [self.unit_status(self.runners[name]) for name in sorted(self.runners)]

    def errors(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.loaded.errors] + [
            cycle_error(self.loaded.units, cycle).as_dict() for cycle in self.cycles]

    async def close(self) -> None:
        await self.prober.close()
        await self.runtimes.close()
        for runner in self.runners.values():
            runner.log.close()

