"""Entering ``failed`` carries its consequences at every cause: the ``unit_failed`` hook fires
exactly once per unit, and the units that Requires= it are stopped (and fail too).

In-process: a real :class:`Manager` with the process runtime, real programs (``sleep``, ``sh``),
real unit files, and a real plugin registered in the real pluggy manager that records hook calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.types import Diagnosis, RepairResult
from llm_supervisor.supervisor.manager import Manager
from tests.supervisor.manager_harness import SH, SLEEP, gone, run_manager, service, until


@dataclass
class Recorder:
    """A plugin that records ``unit_failed`` and answers repairs as told."""

    failed: list[tuple[str, str]] = field(default_factory=list)
    diagnose: bool = False
    repair: RepairResult | None = None

    @hookimpl
    def unit_failed(self, unit: Any, reason: str) -> None:
        self.failed.append((unit.short_name, reason))

    @hookimpl
    def diagnose_failure(self, unit: Any, exit_code: int | None) -> Diagnosis | None:
        if self.diagnose and unit.short_name == "base" and exit_code == 3:
            return Diagnosis("broken_base", "base is broken", "recorder")
        return None

    @hookimpl
    def repair_unit(self, unit: Any, diagnosis: Diagnosis) -> RepairResult | None:
        return self.repair if unit.short_name == "base" else None

    def count(self, name: str) -> int:
        return sum(1 for unit, _ in self.failed if unit == name)


# base <- mid <- top: mid Requires= base, top Requires= mid.
CHAIN = {
    "mid.service": service(f"{SLEEP} 300", "base.service", "Restart=no"),
    "top.service": service(f"{SLEEP} 300", "mid.service", "Restart=no"),
}


async def _chain_running(manager: Manager) -> dict[str, int]:
    await manager.start_target("stack.target")
    names = ("base", "mid", "top")
    await until(lambda: all(manager.runner(n).state == "running" for n in names), "chain up")
    return {n: manager.runner(n).pid for n in names}


async def _assert_cascade(manager: Manager, recorder: Recorder, pids: dict[str, int]) -> None:
    """mid and top stop and fail once each; base failed once."""
    await until(lambda: all(manager.runner(n).state == "failed" for n in ("base", "mid", "top")),
                 "the chain to fail")
    await asyncio.sleep(0.2)  # anything firing twice would have done so by now
    assert [recorder.count(n) for n in ("base", "mid", "top")] == [1, 1, 1], recorder.failed
    assert dict(recorder.failed)["mid"] == "required unit base is failed"
    assert dict(recorder.failed)["top"] == "required unit base is failed"  # transitively
    for name in ("mid", "top"):
        assert gone(pids[name]), f"{name} still runs"
        assert manager.runner(name).pid is None


def test_exit_without_restart(tmp_path: Path) -> None:
    recorder = Recorder()
    base = service(f"{SH} -c 'sleep 0.5; exit 1'", extra="Restart=no")

    async def scenario(manager: Manager) -> None:
        pids = await _chain_running(manager)
        await _assert_cascade(manager, recorder, pids)

    run_manager(tmp_path, {"base.service": base, **CHAIN}, [recorder], scenario)


def test_start_limit_hit(tmp_path: Path) -> None:
    recorder = Recorder()
    base = service(f"{SH} -c 'sleep 0.5; exit 1'",
                    extra="Restart=always\nStartLimitBurst=2\nStartLimitIntervalSec=60")

    async def scenario(manager: Manager) -> None:
        pids = await _chain_running(manager)
        await _assert_cascade(manager, recorder, pids)
        assert "start limit hit" in dict(recorder.failed)["base"]

    run_manager(tmp_path, {"base.service": base, **CHAIN}, [recorder], scenario)


def test_internal_error(tmp_path: Path) -> None:
    """The supervisor's own error (injected: persisting the records raises — an unwritable
    records file is retried instead since issue 18, see supervisor/records_writer.py) fails the
    unit, and what Requires= it stops."""
    recorder = Recorder()
    base = service(f"{SLEEP} 300", extra="Restart=on-failure")

    async def scenario(manager: Manager) -> None:
        pids = await _chain_running(manager)
        def broken() -> None:
            raise RuntimeError("injected: records cannot be persisted")

        manager.records_changed = broken  # type: ignore[method-assign]
        psutil.Process(pids["base"]).kill()
        await until(lambda: manager.runner("base").state == "failed", "base to fail")
        await until(lambda: all(manager.runner(n).state == "failed" for n in ("mid", "top")),
                     "the dependents to fail")
        await asyncio.sleep(0.2)
        assert "internal error" in dict(recorder.failed)["base"]
        # The dependents' own stop hits the same unwritable records; whichever reason wins,
        # each failed once and stopped.
        assert [recorder.count(n) for n in ("base", "mid", "top")] == [1, 1, 1], recorder.failed
        assert all(gone(pids[n]) for n in ("mid", "top"))

    run_manager(tmp_path, {"base.service": base, **CHAIN}, [recorder], scenario)


def test_repair_gives_up(tmp_path: Path) -> None:
    """A plugin's repair gives up (its budget spent)."""
    recorder = Recorder(diagnose=True, repair=RepairResult(False, "budget spent", give_up=True))
    base = service(f"{SH} -c 'sleep 0.5; exit 3'", extra="Restart=on-failure")

    async def scenario(manager: Manager) -> None:
        pids = await _chain_running(manager)
        await _assert_cascade(manager, recorder, pids)
        assert dict(recorder.failed)["base"] == "repair gave up: budget spent"

    run_manager(tmp_path, {"base.service": base, **CHAIN}, [recorder], scenario)


def test_repair_by_hand_fails(tmp_path: Path) -> None:
    recorder = Recorder(repair=RepairResult(False, "the source is gone"))
    base = service(f"{SLEEP} 300", extra="Restart=on-failure")

    async def scenario(manager: Manager) -> None:
        pids = await _chain_running(manager)
        result = await manager.runner("base").repair_by_hand()
        assert result is not None and result["ok"] is False
        await _assert_cascade(manager, recorder, pids)
        assert dict(recorder.failed)["base"] == "repair failed: the source is gone"

    run_manager(tmp_path, {"base.service": base, **CHAIN}, [recorder], scenario)


def test_dependency_cycle(tmp_path: Path) -> None:
    """Units in an ordering cycle fail once (however often the transaction is computed), and
    what Requires= one of them never runs."""
    recorder = Recorder()
    units = {
        "a.service": service(f"{SLEEP} 300", extra="Restart=no").replace(
            "[Service]", "[Unit]\nAfter=b.service\n[Service]"),
        "b.service": service(f"{SLEEP} 300", extra="Restart=no").replace(
            "[Service]", "[Unit]\nAfter=a.service\n[Service]"),
        "c.service": service(f"{SLEEP} 300", "a.service", "Restart=no"),
    }

    async def scenario(manager: Manager) -> None:
        await manager.start_target("stack.target")
        await until(lambda: manager.runner("c").state == "failed", "c to fail")
        await asyncio.sleep(0.2)
        assert recorder.count("c") == 1 and dict(recorder.failed)["c"] == "required unit a is failed"
        await manager.start_target("stack.target")  # the cycle is found again: no second hook
        await asyncio.sleep(0.3)
        assert recorder.count("a") == 1 and recorder.count("b") == 1, recorder.failed
        assert manager.runner("c").pid is None
        assert "cycle" in dict(recorder.failed)["a"]

    run_manager(tmp_path, units, [recorder], scenario)


def test_stop_by_hand_is_not_failed(tmp_path: Path) -> None:
    """A unit stopped by hand is inactive: no hook."""
    recorder = Recorder()
    base = service(f"{SLEEP} 300", extra="Restart=on-failure")

    async def scenario(manager: Manager) -> None:
        await _chain_running(manager)
        await manager.runner("base").stop("stop requested")
        await asyncio.sleep(0.3)
        assert manager.runner("base").state == "inactive"
        assert recorder.failed == []

    run_manager(tmp_path, {"base.service": base, **CHAIN}, [recorder], scenario)
