"""A real :class:`Manager` in-process for fast tests: process runtime, real programs, real unit
files, real plugins registered in the real pluggy manager (importable: ``from manager_harness
import run_manager``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from llm_supervisor.config import Settings
from llm_supervisor.plugins.manager import Plugins
from llm_supervisor.supervisor.manager import Manager
from llm_supervisor.supervisor.records import RECORDS_NAME

SLEEP = shutil.which("sleep")
SH = shutil.which("sh")


def service(exec_start: str, requires: str = "", extra: str = "") -> str:
    """A service wanted by stack.target; ``requires`` also orders it After= that unit."""
    unit = f"[Unit]\nRequires={requires}\nAfter={requires}\n" if requires else ""
    return (f"{unit}[Service]\nExecStart={exec_start}\nRestartSec=0.01\n{extra}\n"
            "[Install]\nWantedBy=stack.target\n")


async def until(predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_manager(tmp_path: Path, units: dict[str, str], plugins: list[object],
                scenario: Callable[[Manager], Awaitable[None]]) -> None:
    """Write ``units`` (plus ``stack.target``), run ``scenario(manager)`` on a fresh event loop,
    then stop every unit. ``plugins`` are registered after the built-ins."""
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    (units_dir / "stack.target").write_text("[Unit]\nDescription=test\n")
    for name, text in units.items():
        (units_dir / name).write_text(text)
    settings = Settings(state_dir=tmp_path / "state", units_dir=units_dir,
                        default_runtime="process")
    settings.state_dir.mkdir(mode=0o700)

    async def main() -> None:
        pm = Plugins(load_entry_points=False)
        for number, plugin in enumerate(plugins):
            pm.register(plugin, name=f"test-plugin-{number}")
        manager = Manager(settings, pm)
        manager.load()
        try:
            await scenario(manager)
        finally:
            records = settings.state_dir / RECORDS_NAME
            if records.is_dir():
                records.rmdir()
            await manager.stop_all("test over")
            await manager.close()

    asyncio.run(main())
