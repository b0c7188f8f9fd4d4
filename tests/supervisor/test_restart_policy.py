"""Restart= policies (README, "Restart="): on-abnormal restarts a unit killed by a signal or
ended for failed health, not one that exited with a code. In-process (see manager_harness)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from llm_supervisor.supervisor.manager import Manager
from tests.supervisor.manager_harness import SH, SLEEP, run_manager, service, until

# Exits 0 on SIGTERM: a health-ended run looks "clean" by its exit status alone.
POLITE = f"""{SH} -c 'trap "exit 0" TERM; while :; do {SLEEP} 0.05; done'"""
NEVER_HEALTHY = "[Health]\nCheck=tcp://127.0.0.1:1\nInterval=0.1\nTimeout=0.5\nRetries=1\n"
ABNORMAL = "Restart=on-abnormal\nStartLimitBurst=50\n"


def test_on_abnormal_restarts_after_failed_health(tmp_path: Path) -> None:
    unit = service(POLITE, extra=ABNORMAL) + NEVER_HEALTHY

    async def scenario(manager: Manager) -> None:
        await manager.start_target("stack.target")
        runner = manager.runner("polite")
        await until(lambda: runner.restarts >= 2, "restarts after failed health")
        assert runner.last_exit is not None and runner.last_exit.code == 0
        assert runner.state != "failed"

    run_manager(tmp_path, {"polite.service": unit}, [], scenario)


def test_on_abnormal_restarts_after_a_signal_but_not_after_an_exit_code(tmp_path: Path) -> None:
    killed = service(f"{SLEEP} 300", extra=ABNORMAL)
    exits = service(f"{SH} -c 'exit 4'", extra=ABNORMAL)

    async def scenario(manager: Manager) -> None:
        await manager.start_target("stack.target")
        victim = manager.runner("killed")
        await until(lambda: victim.state == "running", "killed to run")
        psutil.Process(victim.pid).kill()
        await until(lambda: victim.restarts == 1 and victim.state == "running", "a restart")
        quitter = manager.runner("exits")
        await until(lambda: quitter.state == "failed", "exits to fail")
        await asyncio.sleep(0.2)
        assert quitter.restarts == 0 and quitter.reason == "exited 4"

    run_manager(tmp_path, {"killed.service": killed, "exits.service": exits}, [], scenario)


@pytest.mark.parametrize(("policy", "code", "restarts"), [
    ("on-failure", 0, False), ("on-failure", 2, True), ("always", 0, True), ("no", 2, False),
    ("on-abnormal", 2, False)])
def test_restart_policies(tmp_path: Path, policy: str, code: int, restarts: bool) -> None:
    stamps = tmp_path / "runs"
    unit = service(f"{SH} -c 'echo run >> {stamps}; sleep 0.2; exit {code}'",
                   extra=f"Restart={policy}\nStartLimitBurst=0")

    def runs() -> int:
        return len(stamps.read_text().split()) if stamps.exists() else 0

    async def scenario(manager: Manager) -> None:
        await manager.start_target("stack.target")
        job = manager.runner("job")
        if restarts:
            await until(lambda: runs() >= 2, "a restart")
            return
        expected = "inactive" if code == 0 else "failed"
        await until(lambda: job.state == expected, f"job to be {expected}")
        await asyncio.sleep(0.5)
        assert runs() == 1 and job.last_exit is not None and job.last_exit.code == code

    run_manager(tmp_path, {"job.service": unit}, [], scenario)
