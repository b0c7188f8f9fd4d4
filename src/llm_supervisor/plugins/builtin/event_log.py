"""Built-in plugin: one structlog event per state transition, health change and exit."""

from __future__ import annotations

import structlog

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.units")


@hookimpl
def unit_state_changed(unit: Unit, old: str, new: str, reason: str) -> None:
    log.info("unit_state_changed", unit=unit.name, **{"from": str(old), "to": str(new)},
             reason=reason)


@hookimpl
def unit_health_changed(unit: Unit, health: str, detail: str) -> None:
    log.info("unit_health_changed", unit=unit.name, health=str(health), detail=detail)


@hookimpl
def unit_exited(unit: Unit, exit_code: int | None, signal: int | None) -> None:
    log.info("unit_exited", unit=unit.name, exit_code=exit_code, signal=signal)


@hookimpl
def unit_failed(unit: Unit, reason: str) -> None:
    log.warning("unit_failed", unit=unit.name, reason=reason)
