"""After a daemon restart: clean up (process runtime) or re-adopt (docker) what the previous
daemon left running, as its records (:mod:`.records`) describe it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from llm_supervisor.runtimes.selection import RuntimeSelector
from llm_supervisor.supervisor.runner import UnitRunner

log = structlog.get_logger("llm_supervisor.manager")


async def recover_previous(runners: Mapping[str, UnitRunner], runtimes: RuntimeSelector,
                           records: Mapping[str, dict[str, Any]]) -> None:
    for name, record in records.items():
        runner = runners.get(name)
        if runner is None:
            continue
        # The record says which runtime made it: a unit moved from docker to process (or
        # back) still has its old instance cleaned up by the runtime that owns it.
        runtime = (runtimes.docker() if record.get("runtime") == "docker"
                   else runtimes.process)
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
