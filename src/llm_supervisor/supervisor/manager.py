"""The manager: which units exist, which are wanted, in what order they start and stop.

Per-unit life is in :mod:`.runner`; this module holds the runners together: loading unit files
(reloading: :mod:`.reloading`), targets and dependencies, the records that let a restarted daemon
find what its predecessor left running (:mod:`.recovery`), and the consequences of each
transition. Hooks and events leave through :mod:`.events`. Plugins see the manager through the
:class:`~llm_supervisor.plugins.view.SupervisorView` methods at the end of the class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from llm_supervisor.config import Settings
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.runtimes.selection import RuntimeSelector
from llm_supervisor.supervisor import dependencies
from llm_supervisor.supervisor.events import Events, HookSource
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.supervisor.records import RECORDS_NAME, load_records
from llm_supervisor.supervisor.records_writer import RecordsWriter
from llm_supervisor.supervisor.recovery import recover_previous
from llm_supervisor.supervisor.reload_guard import repairs_paused
from llm_supervisor.supervisor.reloading import reload_units
from llm_supervisor.supervisor.resources import ResourceSampler
from llm_supervisor.supervisor.rolling import (
    RollingRestartFailed,
    rolling_repair,
    rolling_restart,
)
from llm_supervisor.supervisor.rotation import Rotation
from llm_supervisor.supervisor.runner import UnitRunner
from llm_supervisor.supervisor.state import Health, UnitState
from llm_supervisor.supervisor.unit_env import unit_environment
from llm_supervisor.units import graph
from llm_supervisor.units.catalog import load_catalog
from llm_supervisor.units.checks import cycle_error
from llm_supervisor.units.loader import LoadResult, instantiate, load_directory
from llm_supervisor.units.model import Unit, normalise_name
from llm_supervisor.units.model_units import add_model_units
from llm_supervisor.units.replicas import add_replicas

log = structlog.get_logger("llm_supervisor.manager")


class UnitNotFound(KeyError):
    pass


class Manager:
    """Holds the units' runners and is their :class:`RunnerOwner`: every transition a runner makes
    comes back here, and entering ``failed`` carries its consequences (:meth:`transition`)."""

    def __init__(self, settings: Settings, plugins: HookSource):
        self._settings = settings
        self.plugins = plugins
        self.events = Events(plugins)
        self.prober = Prober()
        self.resources = ResourceSampler()  # CPU/memory per unit (status, metrics)
        self.runtimes = RuntimeSelector(settings)
        # Units the gateway must not send to (rolling restarts); the gateway applies changes.
        self.rotation = Rotation(self._rotation_changed)
        self.loaded = LoadResult()
        self.runners: dict[str, UnitRunner] = {}
        self.target: str = settings.default_target
        self.target_error = ""  # the last target asked for has no unit file: nothing started
        self.cycles: list[list[str]] = []
        self.purge_on_exit = False
        self._reload_lock = asyncio.Lock()
        self._cascades: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._records_path = settings.state_dir / RECORDS_NAME
        self._previous_records: dict[str, dict[str, Any]] = self._read_records()
        self._records = RecordsWriter(self._records_path, lambda: {  # retries on a full disk
            name: r.instance.record() for name, r in self.runners.items()
            if r.instance is not None})

    # ------------------------------------------------------------------ loading
    @property
    def settings(self) -> Settings:
        return self._settings

    def load_units(self) -> LoadResult:
        """The unit files, the replicas the settings ask for, and the units plugins add."""
        result = load_directory(self.settings.units_dir, self.settings.expansion_vars())
        add_replicas(result, self.settings.expansion_vars(), self.settings.model_replicas)
        add_model_units(result, self.settings.expansion_vars(),  # the model catalog (issue 20)
                        load_catalog(self.settings.model_catalog_dirs),
                        self.settings.resolved_models_port_base)
        for unit in self.events.add_units():
            result.units.setdefault(unit.name, unit)
        for error in result.errors:
            log.error("unit_file_error", **error.as_dict())
        return result

    def load(self) -> None:
        self.loaded = self.load_units()
        for unit in self.loaded.units.values():
            if unit.is_service:
                self.add_runner(unit)

    def add_runner(self, unit: Unit) -> UnitRunner:
        log_path = self.settings.log_dir / f"{unit.short_name}.log"
        unit_log = UnitLog(log_path, self.settings.log_max_bytes, self.settings.log_backups)
        runner = UnitRunner(unit, self, self.runtimes.for_unit(unit), unit_log,
                            self.events, self.prober)
        self.runners[unit.name] = runner
        return runner

    def resolve(self, name: str) -> str:
        full = normalise_name(name)
        if full in self.loaded.units:
            return full
        if instantiate(self.loaded, full, self.settings.expansion_vars()) is not None:
            self.add_runner(self.loaded.units[full])
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
            self.events.notify({"type": "error", "target": self.target, "message": str(exc)})
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
        self.events.notify({"type": "error", "target": self.target, "message": self.target_error})
        for runner in self.runners.values():
            if self.target in runner.unit.wanted_by and not runner.wanted:
                runner.set_state(runner.state, f"not started: {self.target_error}")

    def start_unit(self, name: str, reason: str = "start requested") -> list[str]:
        """Start a unit (or target) and what it Requires=/Wants=; returns the names started.
        The named unit's start limit begins again (as after ``systemctl reset-failed``), so
        deliberate starts, a model activated on demand included, never count as crashes."""
        full = self.resolve(name)
        services, cycles = self.transaction(full)
        if cycles:
            raise graph.DependencyCycleError(cycles[0])
        if full in self.runners:  # a deliberate start: its start limit counts from here
            self.runners[full].clear_start_limit()
        for service in sorted(services):
            self.runners[service].start(reason if service == full else f"pulled in by {full}")
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

    async def wait_for_dependencies(self, runner: UnitRunner,
                                    stop: asyncio.Event) -> dependencies.Verdict:
        """Wait until every After= unit that is coming up is ready (:mod:`.dependencies`)."""

        def announce(waiting: list[str]) -> None:
            runner.set_state(UnitState.STARTING, "waiting for " + ", ".join(waiting))

        return await dependencies.wait_for(runner.unit, self.runners, stop,
                                           self.events.next_change, announce)

    async def reset(self) -> dict[str, Any]:
        """``llm-supervisorctl reset`` (the old reset_and_run.sh): stop everything, remove what
        the runtimes own, clear failures, bring the target up again."""
        await self.stop_all("reset requested")
        removed = await self.runtimes.remove_owned(purge=False)
        for runner in self.runners.values():
            runner.reset_failures()
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
            return await reload_units(self)

    def condition_runtime(self, unit: Unit) -> str:
        return self.runtimes.condition_runtime(unit)

    # ------------------------------------------------------------------ environment
    def environment_for(self, unit: Unit) -> dict[str, str]:
        """What the unit's program gets; the order and the allow-list are in :mod:`unit_env`."""
        return unit_environment(self.settings, unit, self.events.unit_environment(unit))

    # ------------------------------------------------------------------ records
    def _read_records(self) -> dict[str, dict[str, Any]]:
        return load_records(self._records_path)

    def records_changed(self) -> None:
        self._records.save()

    async def recover_previous(self) -> None:
        """Clean up (process runtime) or re-adopt (docker) what a previous daemon left."""
        await recover_previous(self.runners, self.runtimes, self._previous_records)
        self._previous_records = {}
        self.records_changed()

    # ------------------------------------------------------------------ events
    def transition(self, runner: UnitRunner, old: UnitState, new: UnitState,
                   reason: str) -> None:
        """Every state change of every unit. Entering ``failed``, whatever the cause, fires
        ``unit_failed`` and stops (and fails) the wanted units that Requires= it."""
        self.events.state_changed(runner.unit, old, new, reason)
        if new != UnitState.FAILED:
            return
        self.events.failed(runner.unit, reason)
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
        self.events.health_changed(runner.unit, health, detail, latency)

    async def _rotation_changed(self, name: str, serving: bool) -> None:
        unit = self.loaded.units.get(name)
        if unit is not None:
            await self.events.rotation_changed(unit, serving)

    # ------------------------------------------------------------------ status
    def status_of(self, runner: UnitRunner) -> dict[str, Any]:
        """The runner's status with its CPU and memory use (``cpu_percent``, ``memory_bytes``)."""
        return self._status(runner, self.resources.usage(runner))

    def _by_name(self) -> list[UnitRunner]:
        return [self.runners[name] for name in sorted(self.runners)]

    def status(self) -> list[dict[str, Any]]:
        runners = self._by_name()
        return [self._status(runner, usage)
                for runner, usage in zip(runners, self.resources.usages(runners), strict=True)]

    def _status(self, runner: UnitRunner, usage: dict[str, Any]) -> dict[str, Any]:
        """One unit's status: the runner's, its resources, and what plugins add (heal)."""
        return {**runner.status(), **usage, **self.events.unit_status(runner.unit)}

    def errors(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.loaded.errors] + [
            cycle_error(self.loaded.units, cycle).as_dict() for cycle in self.cycles]

    # ------------------------------------------------------------------ the plugins' view
    # (llm_supervisor.plugins.view.SupervisorView; start_unit, stop_unit, restart_unit and
    # environment_for are above)
    def units(self) -> Mapping[str, Unit]:
        return self.loaded.units

    def unit_status(self, name: str) -> dict[str, Any] | None:
        runner = self.runners.get(normalise_name(name))
        return None if runner is None else self.status_of(runner)

    def statuses(self) -> list[dict[str, Any]]:
        return self.status()

    def usages(self) -> list[dict[str, Any]]:
        runners = self._by_name()
        return [{"name": r.unit.short_name, "state": str(r.state), "reason": r.reason, **usage}
                for r, usage in zip(runners, self.resources.usages(runners), strict=True)]

    def is_up(self, name: str) -> bool:
        runner = self.runners.get(normalise_name(name))
        return runner is not None and runner.state in (UnitState.RUNNING, UnitState.STARTING) \
            and runner.instance is not None

    def runtime_of(self, name: str) -> str | None:
        runner = self.runners.get(normalise_name(name))
        return None if runner is None else runner.runtime.name

    def in_rotation(self, name: str) -> bool:
        return self.rotation.serves(normalise_name(name))

    def unit_log(self, name: str) -> UnitLog | None:
        runner = self.runners.get(normalise_name(name))
        return None if runner is None else runner.log

    def gateway_routes(self, units: list[Unit]) -> list[list[dict[str, Any]] | None]:
        return self.events.gateway_routes(units)

    def gateway_info(self) -> dict[str, Any] | None:
        return self.events.gateway_info()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return self.events.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.events.unsubscribe(queue)

    async def close(self) -> None:
        await self._records.close()  # a pending save is written; a retry on a full disk ends
        await self.prober.close()
        await self.runtimes.close()
        for runner in self.runners.values():
            runner.log.close()

