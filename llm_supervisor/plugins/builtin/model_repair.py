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

See docs/repair.md.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import structlog

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.types import Diagnosis, RepairResult
from llm_supervisor.repair import detect, engine, verify
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.context import RepairContext
from llm_supervisor.repair.store import Store, store_for

log = structlog.get_logger("llm_supervisor.repair")

_state: dict[str, Any] = {"manager": None}
BUDGET = Budget()


def _environment(unit: Any) -> dict[str, str]:
    """The environment the unit's program gets (falls back to the daemon's settings when an
    ``EnvironmentFile=`` cannot be read)."""
    manager = _state["manager"]
    if manager is None:
        return {**os.environ, **getattr(unit, "environment", {})}
    try:
        return dict(manager.environment_for(unit))
    except Exception:
        return {**os.environ, **manager.settings.expansion_vars(), **unit.environment}


def _context(unit: Any) -> RepairContext | None:
    return RepairContext.for_unit(unit, _environment(unit))


@hookimpl
def supervisor_started(manager: Any) -> None:
    _state["manager"] = manager
    BUDGET.attach(manager.settings.state_dir / "repair-budget.json")  # survives daemon restarts


@hookimpl
def diagnose_failure(unit: Any, exit_code: int | None, log_tail: list[str]) -> Diagnosis | None:
    ctx = _context(unit)
    if ctx is None:
        return None
    diagnosis = detect.diagnose(ctx.model_dir, exit_code, log_tail,
                                quick_check=lambda: verify.quick_problems(ctx.model_dir))
    if diagnosis is not None:
        log.warning("model_damage_detected", unit=ctx.unit_name, kind=diagnosis.kind,
                    summary=diagnosis.summary, exit_code=exit_code)
    return diagnosis


@hookimpl
def repair_unit(unit: Any, diagnosis: Any, progress: Any) -> RepairResult | None:
    if diagnosis.kind != "manual" and diagnosis.kind not in detect.KINDS:
        return None  # another plugin's diagnosis
    ctx = _context(unit)
    if ctx is None:
        return None
    return engine.repair(ctx, diagnosis, progress, BUDGET, unit.name)


@hookimpl
def unit_health_changed(unit: Any, health: str) -> None:
    if str(health) != "healthy":
        return
    BUDGET.healthy(unit.name)
    ctx = _context(unit)
    store = store_for(ctx.env, ctx.unit_name) if ctx is not None else None
    if ctx is None or store is None or unit.name in _filling:
        return
    _filling.add(unit.name)
    threading.Thread(target=_fill_store, args=(unit.name, ctx, store), daemon=True,
                     name=f"repair-store:{ctx.unit_name}").start()


_filling: set[str] = set()


def _fill_store(key: str, ctx: RepairContext, store: Store) -> None:
    """Keep a verified reserve copy of the healthy model (off the event loop)."""
    try:
        added = store.fill(ctx.model_dir)
        log.info("model_repair_store_filled", unit=ctx.unit_name, store=str(store.root),
                 added=added)
    except Exception as exc:  # a full disk must not hurt the unit
        log.warning("model_repair_store_failed", unit=ctx.unit_name, error=str(exc))
    finally:
        _filling.discard(key)
