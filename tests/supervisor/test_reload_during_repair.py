"""A reload and a repair by hand never overlap (issue 18, "also"): a reload that changes a unit
being repaired waits for the repair to finish, then replaces the unit with its new definition;
in the end exactly one instance runs, the new one, and the runner the repair restarted is the
one the reload then replaced (no unsupervised leftover). Real manager, real processes, a real
pluggy plugin whose repair blocks until the test lets it finish."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.types import RepairResult
from llm_supervisor.supervisor.manager import Manager
from tests.supervisor.manager_harness import SLEEP, run_manager, service, until


class SlowRepair:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl
    def repair_unit(self, unit, diagnosis, progress):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.release.wait(30)
        return RepairResult(ok=True, message="repaired")


def test_a_reload_waits_for_a_repair_by_hand(tmp_path: Path) -> None:
    plugin = SlowRepair()

    async def scenario(manager: Manager) -> None:
        await manager.start_target("stack.target")
        old = manager.runner("model")
        await until(lambda: old.state == "running", "model to run")
        repair = asyncio.ensure_future(old.repair_by_hand())
        await until(plugin.entered.is_set, "the repair to start")
        (tmp_path / "units" / "model.service").write_text(
            service(f"{SLEEP} 1001", extra="[Install]\nWantedBy=stack.target"))
        reload = asyncio.ensure_future(manager.reload())
        await asyncio.sleep(1.0)
        assert not reload.done(), "the reload went ahead while the repair was running"
        assert manager.runner("model") is old
        plugin.release.set()
        result = await asyncio.wait_for(repair, 30)
        assert result is not None and result["ok"]
        summary = await asyncio.wait_for(reload, 30)
        assert summary["changed"] == ["model.service"]
        new = manager.runner("model")
        assert new is not old
        await until(lambda: new.state == "running", "the new definition to run")
        assert old.pid is None and old.instance is None
        assert "1001" in " ".join(new.unit.exec_start or [])

    run_manager(tmp_path, {"model.service": service(
        f"{SLEEP} 1000", extra="[Install]\nWantedBy=stack.target")}, [plugin], scenario)
