"""Built-in plugin: self-healing beyond the weights (out of memory, a taken port, a full disk,
a crashing engine), through the same hooks as the weights repair.

- ``diagnose_failure``: the failed run's log and exit say which (:mod:`llm_supervisor.heal`);
  None for anything else, so the model-repair plugin and the restart policy still apply;
- ``repair_unit``: decides the next start (a cheaper size, another port, the other engine, disk
  space freed) or gives up with one sentence that says what to change: never a restart loop at
  the same size;
- ``unit_environment``: the next start's variables (merged last by the manager);
- ``unit_status``: ``heal`` (the ``degraded: ...`` / ``healed: ...`` line), the memory limit;
- ``unit_health_changed`` / ``unit_state_changed``: a run that answers turns ``degraded`` into
  ``healed``; after ``HEAL_STABLE_SEC`` (default 600) of it an OOM-degraded unit goes back to its
  configured size at its next start, unless that size ran out of memory twice.

Stalls (``StallTimeoutSec=``) are detected inside the model server (its engine stops answering
health, the supervisor restarts it); this plugin only hands the key over as ``STALL_TIMEOUT_SEC``.
See docs/heal.md.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from llm_supervisor.heal import disk, engine_crash, oom, ports
from llm_supervisor.heal.ledger import Ledger
from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.types import Diagnosis, Progress, RepairResult
from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.process import cgroups

if TYPE_CHECKING:
    from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.heal")

PLUGIN = "heal"
KINDS = (oom.KIND, ports.KIND, disk.KIND, engine_crash.KIND)
DEFAULT_STABLE_SEC = 600.0
MODEL_SERVER_MARKER = "llm_supervisor.model_server"


def _is_model_unit(unit: Unit) -> bool:
    argv = [*(unit.exec_start or [])]
    return any(MODEL_SERVER_MARKER in arg for arg in argv) or "MODEL_PATH" in unit.environment


def _has_ladder(unit: Unit) -> bool:
    return _is_model_unit(unit) or any(key in unit.environment for key in oom.LADDER_KEYS)


def _mib(size: int | None) -> str:
    return "infinity" if size is None else f"{size / (1 << 20):.0f}M"


class HealPlugin:
    def __init__(self) -> None:
        self.supervisor: SupervisorView | None = None
        self.ledger = Ledger()
        self.ladders: dict[str, oom.Ladder] = {}
        self.crashes: dict[tuple[str, str], int] = {}  # (unit, engine) -> crashes at start
        self.answered: dict[str, bool] = {}  # the current run became healthy / running
        self.disk_retried: set[str] = set()
        self.port_holders: dict[str, str] = {}
        self._stable: dict[str, asyncio.TimerHandle] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ helpers
    def _environment(self, unit: Unit) -> dict[str, str]:
        if self.supervisor is None:
            return {**os.environ, **unit.environment, **self.ledger.environment(unit.name)}
        try:
            return dict(self.supervisor.environment_for(unit))
        except Exception:
            return {**os.environ, **self.supervisor.settings.expansion_vars(), **unit.environment,
                    **self.ledger.environment(unit.name)}

    def _dirs(self) -> tuple[Path | None, Path | None]:
        if self.supervisor is None:
            return None, None
        return self.supervisor.settings.state_dir, self.supervisor.settings.log_dir

    def _cgroup_usage(self, unit: Unit) -> int | None:
        """What the kernel charges the unit's memory cgroup (what MemoryMax= limits), if any."""
        if self.supervisor is None:
            return None
        owner = str(self.supervisor.settings.state_dir.resolve())
        cgroup = cgroups.for_unit(unit.name, owner, unit.memory_max, unit.memory_high)
        return cgroup.usage() if cgroup is not None else None

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def supervisor_started(self, supervisor: SupervisorView) -> None:
        self.supervisor = supervisor
        self._loop = asyncio.get_running_loop()

    @hookimpl
    def unit_environment(self, unit: Unit) -> dict[str, str] | None:
        env = self.ledger.environment(unit.name)
        if unit.stall_timeout_sec is not None:
            env.setdefault("STALL_TIMEOUT_SEC", f"{unit.stall_timeout_sec:g}")
        return env or None

    @hookimpl
    def unit_status(self, unit: Unit) -> dict[str, Any] | None:
        extra: dict[str, Any] = {}
        heal = self.ledger.status(unit.name)
        if heal is not None:
            extra["heal"] = heal
        if unit.memory_max is not None or unit.memory_high is not None:
            extra["memory_max"] = unit.memory_max
            extra["memory_high"] = unit.memory_high
            extra["memory_cgroup_bytes"] = self._cgroup_usage(unit)
        if unit.name in self.port_holders:
            extra["port_holder"] = self.port_holders[unit.name]
        return extra or None

    @hookimpl
    def diagnose_failure(self, unit: Unit, exit_code: int | None,
                         log_tail: list[str]) -> Diagnosis | None:
        found = disk.evidence(log_tail)
        if found:
            return Diagnosis(disk.KIND, f"disk full: {found}", PLUGIN, {"evidence": found})
        found = oom.evidence(log_tail)
        if found:
            return Diagnosis(oom.KIND, f"out of memory: {found}", PLUGIN, {"evidence": found})
        found = ports.evidence(log_tail)
        if found:
            return Diagnosis(ports.KIND, f"port taken: {found}", PLUGIN, {"evidence": found})
        if _is_model_unit(unit) and not self.answered.get(unit.name):
            how = engine_crash.crash(exit_code, log_tail)
            if how is not None:
                return self._count_crash(unit, how)
        return None

    def _count_crash(self, unit: Unit, how: str) -> Diagnosis | None:
        env = self._environment(unit)
        engine = engine_crash.engine_of(env)
        with self._lock:
            key = (unit.name, engine)
            self.crashes[key] = self.crashes.get(key, 0) + 1
            count = self.crashes[key]
        log.warning("engine_crash_at_start", unit=unit.name, engine=engine, how=how, count=count)
        other = engine_crash.other_engine(engine, env)
        allowed = engine_crash.crashes_allowed(env)
        if count < allowed or other is None or self.crashes.get((unit.name, other), 0) >= allowed:
            return None  # the restart policy retries; the start limit ends a hopeless case
        return Diagnosis(engine_crash.KIND,
                         f"{engine} crashed at start {count}× ({how})", PLUGIN,
                         {"engine": engine, "other": other, "how": how, "count": count})

    @hookimpl
    def repair_unit(self, unit: Unit, diagnosis: Diagnosis,
                    progress: Progress) -> RepairResult | None:
        if diagnosis.plugin != PLUGIN or diagnosis.kind not in KINDS:
            return None
        handler = {oom.KIND: self._heal_oom, ports.KIND: self._heal_port,
                   disk.KIND: self._heal_disk, engine_crash.KIND: self._heal_engine}[diagnosis.kind]
        result = handler(unit, diagnosis)
        log.warning("heal", unit=unit.name, kind=diagnosis.kind, ok=result.ok,
                    give_up=result.give_up, message=result.message)
        return result

    # ------------------------------------------------------------------ out of memory
    def _heal_oom(self, unit: Unit, diagnosis: Diagnosis) -> RepairResult:
        env = self._environment(unit)
        limit = f" under MemoryMax={_mib(unit.memory_max)}" if unit.memory_max else ""
        with self._lock:
            ladder = self.ladders.setdefault(unit.name, oom.Ladder())
        if not _has_ladder(unit):
            ladder.quick_ooms += 1
            line = f"OOM{limit} ({ladder.quick_ooms}× without a stable run)"
            self.ledger.degraded(unit.name, oom.KIND, line)
            if ladder.quick_ooms >= 3:
                return RepairResult(False, (
                    f"ran out of memory {ladder.quick_ooms} times in a row{limit}: raise "
                    f"MemoryMax= in {unit.short_name}'s unit file, or make it use less"),
                    give_up=True)
            return RepairResult(False, f"out of memory{limit}; restarting as the policy says")
        model_server = _is_model_unit(unit)
        size = oom.current_size(env, model_server)
        if ladder.configured is None:
            ladder.configured = size
            ladder.steps = [size.describe()]
        ladder.failed_sizes[size] = ladder.failed_sizes.get(size, 0) + 1
        step = oom.cheaper(size, engine_crash.engine_of(env) if model_server else "")
        if step is None:
            self.ledger.degraded(unit.name, oom.KIND, ladder.line() + " (floor)")
            return RepairResult(False, (
                f"out of memory at the smallest configuration ({size.describe()}){limit}: raise "
                f"MemoryMax= (or free memory on the machine), or serve a smaller model"),
                give_up=True)
        smaller, what = step
        ladder.steps.append(what)
        self.ledger.degraded(unit.name, oom.KIND, ladder.line(),
                             oom.as_environment(smaller, model_server))
        return RepairResult(True, f"out of memory{limit}: restarting with {smaller.describe()}",
                            details={"size": smaller.describe()})

    def _stable_run(self, unit_name: str) -> None:
        """HEAL_STABLE_SEC of answering: an OOM-degraded unit may try its configured size again
        at its next start."""
        self._stable.pop(unit_name, None)
        ladder = self.ladders.get(unit_name)
        if ladder is not None:
            ladder.quick_ooms = 0
        if ladder is None or ladder.configured is None or len(ladder.steps) < 2:
            return
        if ladder.may_return():
            self.ledger.clear_overrides(unit_name, list(oom.LADDER_KEYS) + ["USE_INT8"])
            self.ledger.healed(unit_name, ladder.line() + f"; stable, the next start tries "
                               f"{ladder.configured.describe()} again")
            ladder.steps = [ladder.configured.describe()]
            log.info("heal_oom_stable", unit=unit_name, back_to=ladder.configured.describe())

    # ------------------------------------------------------------------ taken port
    def _heal_port(self, unit: Unit, diagnosis: Diagnosis) -> RepairResult:
        env = self._environment(unit)
        found = ports.taken(env, unit)
        if found is None:  # gone by now, or a port we cannot tell: the policy's backoff
            return RepairResult(False, "the port it wanted is free again; restarting as the "
                                "policy says")
        key, port, holder = found
        self.port_holders[unit.name] = holder.describe()
        if key in ports.INTERNAL:
            new = ports.free_port()
            ports.rewire(unit, port, new)
            self._restart_dependents(unit, port, new)
            self.ledger.degraded(unit.name, ports.KIND,
                                 f"{holder.describe()} → {key} moved {port} → {new} "
                                 f"(health check and gateway follow)", {key: str(new)})
            return RepairResult(True, f"{holder.describe()}; moved {key} to {new}")
        setting = key or "the unit's port"
        self.ledger.degraded(unit.name, ports.KIND, holder.describe())
        return RepairResult(False, (
            f"{holder.describe()}: stop it, or set {setting}=<free port> (e.g. "
            f"{setting}={ports.free_port()}) in the environment or the config file"),
            give_up=True)

    def _restart_dependents(self, unit: Unit, old: int, new: int) -> None:
        """Units that reach the moved unit by its port on their command line follow it and are
        restarted (they start again once the moved unit is ready, if they run After= it)."""
        if self.supervisor is None or self._loop is None:
            return
        changed = ports.rewire_dependents(list(self.supervisor.units().values()), unit, old, new)
        for other in changed:
            log.warning("heal_port_rewired", unit=other.name, follows=unit.name, port=new)
            status = self.supervisor.unit_status(other.name)
            if status is not None and status.get("wanted"):
                asyncio.run_coroutine_threadsafe(self.supervisor.restart_unit(other.name),
                                                 self._loop)

    # ------------------------------------------------------------------ full disk
    def _heal_disk(self, unit: Unit, diagnosis: Diagnosis) -> RepairResult:
        env = self._environment(unit)
        model_dir = Path(env["MODEL_PATH"]) if env.get("MODEL_PATH") else None
        state_dir, log_dir = self._dirs()
        where = model_dir or state_dir or Path(".")
        if unit.name in self.disk_retried:
            return RepairResult(False, (
                f"the disk is still full after freeing what we own: free space at {where} "
                f"({disk.free_bytes(where) >> 20} MiB free now), then `llm-supervisorctl start "
                f"{unit.short_name}`"), give_up=True)
        freed = disk.reclaim(model_dir, state_dir, log_dir)
        if unit.runtime == "docker" or unit.container is not None:
            self._reclaim_images(freed)
        if not freed.paths:
            return RepairResult(False, (
                f"the disk is full at {where} and nothing there is ours to free: free space "
                f"there, then `llm-supervisorctl start {unit.short_name}`"), give_up=True)
        self.disk_retried.add(unit.name)
        self.ledger.degraded(unit.name, disk.KIND, f"disk full → {freed.describe()}; retrying once")
        return RepairResult(True, f"disk full: {freed.describe()}; retrying once",
                            details={"freed": freed.paths, "bytes": freed.bytes})

    def _reclaim_images(self, freed: disk.Freed) -> None:
        if self.supervisor is None:
            return
        try:
            import docker  # optional: only where the docker runtime is in use

            client = docker.from_env(timeout=10)
        except Exception:
            return
        try:
            disk.reclaim_images(client, labels.owner_id(self.supervisor.settings.state_dir), freed)
        finally:
            client.close()

    # ------------------------------------------------------------------ crashing engine
    def _heal_engine(self, unit: Unit, diagnosis: Diagnosis) -> RepairResult:
        details = diagnosis.details
        other = str(details["other"])
        self.ledger.degraded(unit.name, engine_crash.KIND,
                             f"{details['engine']} crashed at start {details['count']}× "
                             f"({details['how']}) → serving with {other}", {"ENGINE": other})
        return RepairResult(True, f"{diagnosis.summary}: restarting with ENGINE={other}")

    # ------------------------------------------------------------------ answering again
    def _answered(self, unit: Unit) -> None:
        self.answered[unit.name] = True
        if _is_model_unit(unit):  # the engine it runs on works: its crash count starts over
            engine = engine_crash.engine_of(self._environment(unit))
            self.crashes.pop((unit.name, engine), None)
        self.disk_retried.discard(unit.name)
        self.port_holders.pop(unit.name, None)
        if self.ledger.healed(unit.name):
            log.info("unit_healed", unit=unit.name, status=self.ledger.status(unit.name))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        stable = float(self._environment(unit).get("HEAL_STABLE_SEC", "") or DEFAULT_STABLE_SEC)
        old = self._stable.pop(unit.name, None)
        if old is not None:
            old.cancel()
        self._stable[unit.name] = loop.call_later(stable, self._stable_run, unit.name)

    @hookimpl
    def unit_health_changed(self, unit: Unit, health: str) -> None:
        if str(health) == "healthy":
            self._answered(unit)

    @hookimpl
    def unit_state_changed(self, unit: Unit, new: str) -> None:
        if str(new) == "starting":
            self.answered[unit.name] = False
            timer = self._stable.pop(unit.name, None)
            if timer is not None:
                timer.cancel()
        elif str(new) == "running" and unit.health is None:
            self._answered(unit)


def make_plugin() -> HealPlugin:
    return HealPlugin()
