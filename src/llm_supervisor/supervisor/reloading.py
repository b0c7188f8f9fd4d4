"""``reload``: re-read the unit files and restart only what changed.

supervisord's ``reload`` restarts everything. Here a unit whose definition is the same keeps
running; a changed one is stopped and started anew; a changed instance of a replicated unit is
replaced one at a time (:mod:`.rolling`), so the gateway never loses its last instance; a file
that no longer parses keeps its old unit and its error is reported.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

import structlog

from llm_supervisor.supervisor.events import Events
from llm_supervisor.supervisor.rolling import RollingOwner, RollingRestartFailed, roll, rolled_on_reload
from llm_supervisor.supervisor.runner import UnitRunner
from llm_supervisor.units.loader import LoadResult
from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.manager")


class ReloadOwner(RollingOwner, Protocol):
    """What a reload reads and changes of the manager."""

    loaded: LoadResult
    target: str
    target_error: str
    cycles: list[list[str]]
    events: Events

    def load_units(self) -> LoadResult: ...

    def add_runner(self, unit: Unit) -> UnitRunner: ...

    def transaction(self, root: str) -> tuple[set[str], list[list[str]]]: ...

    async def stop_units(self, names: set[str], reason: str) -> None: ...

    async def start_target(self, target: str | None = None) -> None: ...


async def reload_units(owner: ReloadOwner) -> dict[str, Any]:
    fresh = owner.load_units()
    old_units = owner.loaded.units
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
    rolled = rolled_on_reload(changed, fresh.units, owner.runners)
    affected = {n for n in (*removed, *changed) if n in owner.runners} - set(rolled)
    was_wanted = {n for n in affected if owner.runners[n].wanted}
    await owner.stop_units(affected, "unit file changed")
    for name in affected:
        owner.runners.pop(name).log.close()
    owner.loaded = fresh
    for name in (*changed, *added):
        if fresh.units[name].is_service and name not in rolled:
            owner.add_runner(fresh.units[name])
    wanted, owner.cycles = owner.transaction(owner.target)
    for name in sorted((was_wanted - set(removed)) | (set(added) & wanted)):
        owner.runners[name].start("unit file changed")
    summary = {"changed": changed, "added": added, "removed": removed,
               "errors": [str(e) for e in fresh.errors]}
    log.info("reloaded", **summary)
    owner.events.notify({"type": "reload", **summary})
    if owner.target_error and owner.target in fresh.units:  # the missing target file is there
        await owner.start_target(owner.target)
    if rolled:
        try:
            await roll(owner, rolled, functools.partial(_replace_runner, owner), "unit file changed")
        except RollingRestartFailed as exc:
            summary["errors"].append(str(exc))
    return summary


async def _replace_runner(owner: ReloadOwner, name: str) -> UnitRunner:
    """A reload's rolling step: stop the old definition of ``name``, start the new one."""
    old = owner.runners[name]
    await old.stop("unit file changed")
    old.log.close()
    runner = owner.add_runner(owner.loaded.units[name])
    runner.start("unit file changed")
    return runner

