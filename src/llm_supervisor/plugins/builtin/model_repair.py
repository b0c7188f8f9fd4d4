"""Built-in plugin: self-healing of the model service (the old ``fix_model_service.sh``, automatic).

Thin hook layer over :mod:`llm_supervisor.repair`:

- ``diagnose_failure``: recognise a weight-load failure of a unit that runs the model server
  (exit code 65, the ``weights_load_failed`` event, classic log signatures, or a stat-only look
  at the model directory after any other abnormal end);
- ``repair_unit``: verify against the manifest / hub metadata, re-fetch only the bad files, fix
  modes; give up with a reason once the budget is spent. Also serves
  ``llm-supervisorctl repair UNIT [--verify-only]`` (diagnosis kind ``manual``);
- ``unit_health_changed``: a healthy unit ends the streak of unsuccessful repairs, and its
  verified files are copied into the repair store (:mod:`llm_supervisor.repair.store`) in a
  background thread.

Each daemon gets its own :class:`ModelRepairPlugin` (``make_plugin``) with its repair budget.
See docs/repair.md.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import structlog

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.types import Diagnosis, Progress, RepairResult
from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.repair import detect, engine, verify
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.context import RepairContext
from llm_supervisor.repair.store import Store, store_for
from llm_supervisor.units.replicas import group_of

if TYPE_CHECKING:
    from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.repair")


class ModelRepairPlugin:
    def __init__(self) -> None:
        self.supervisor: SupervisorView | None = None
        self.budget = Budget()
        self._filling: set[str] = set()  # units whose store is being filled right now
        # Replicas share one model directory: their repairs run one after the other (the
        # second then finds the files already verified and fetches nothing).
        self._dir_locks: dict[str, threading.Lock] = {}
        self._dir_locks_guard = threading.Lock()

    def _dir_lock(self, model_dir: object) -> threading.Lock:
        with self._dir_locks_guard:
            return self._dir_locks.setdefault(os.path.realpath(str(model_dir)), threading.Lock())

    def _environment(self, unit: Unit) -> dict[str, str]:
        """The environment the unit's program gets (falls back to the daemon's settings when an
        ``EnvironmentFile=`` cannot be read)."""
        if self.supervisor is None:
            return {**os.environ, **unit.environment}
        try:
            return dict(self.supervisor.environment_for(unit))
        except Exception:
            return {**os.environ, **self.supervisor.settings.expansion_vars(), **unit.environment}

    def _context(self, unit: Unit) -> RepairContext | None:
        return RepairContext.for_unit(unit, self._environment(unit))

    @hookimpl
    def supervisor_started(self, supervisor: SupervisorView) -> None:
        self.supervisor = supervisor
        # The budget survives daemon restarts.
        self.budget.attach(supervisor.settings.state_dir / "repair-budget.json")

    @hookimpl
    def diagnose_failure(self, unit: Unit, exit_code: int | None,
                         log_tail: list[str]) -> Diagnosis | None:
        ctx = self._context(unit)
        if ctx is None:
            return None
        diagnosis = detect.diagnose(ctx.model_dir, exit_code, log_tail,
                                    quick_check=lambda: verify.quick_problems(ctx.model_dir))
        if diagnosis is not None:
            log.warning("model_damage_detected", unit=ctx.unit_name, kind=diagnosis.kind,
                        summary=diagnosis.summary, exit_code=exit_code)
        return diagnosis

    @hookimpl
    def repair_unit(self, unit: Unit, diagnosis: Diagnosis,
                    progress: Progress) -> RepairResult | None:
        if diagnosis.kind != "manual" and diagnosis.kind not in detect.KINDS:
            return None  # another plugin's diagnosis
        ctx = self._context(unit)
        if ctx is None:
            return None
        with self._dir_lock(ctx.model_dir):
            return engine.repair(ctx, diagnosis, progress, self.budget, unit.name)

    @hookimpl
    def unit_health_changed(self, unit: Unit, health: str) -> None:
        if str(health) != "healthy":
            return
        self.budget.healthy(unit.name)
        ctx = self._context(unit)
        # One reserve copy per model directory: replicas (model-service@2...) share their
        # first instance's store; each catalog model (model@NAME, no instance) has its own.
        store_name = (group_of(unit.name) if unit.instance else unit.name).removesuffix(".service")
        store = store_for(ctx.env, store_name) if ctx is not None else None
        if ctx is None or store is None or store_name in self._filling:
            return
        self._filling.add(store_name)
        threading.Thread(target=self._fill_store, args=(store_name, ctx, store), daemon=True,
                         name=f"repair-store:{ctx.unit_name}").start()

    def _fill_store(self, key: str, ctx: RepairContext, store: Store) -> None:
        """Keep a verified reserve copy of the healthy model (off the event loop)."""
        try:
            added = store.fill(ctx.model_dir)
            log.info("model_repair_store_filled", unit=ctx.unit_name, store=str(store.root),
                     added=added)
        except Exception as exc:  # a full disk must not hurt the unit
            log.warning("model_repair_store_failed", unit=ctx.unit_name, error=str(exc))
        finally:
            self._filling.discard(key)


def make_plugin() -> ModelRepairPlugin:
    return ModelRepairPlugin()
