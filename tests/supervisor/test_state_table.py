"""The table of allowed transitions (supervisor/state.py) is what set_state enforces: every state
can fail, a disallowed change raises (a supervisor bug, named), and a real unit's life through
start, health, a crash, backoff, restart and stop stays inside the table (any transition outside
it would fail the unit with an internal error)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llm_supervisor.supervisor.manager import Manager
from llm_supervisor.supervisor.state import ALLOWED, InvalidTransition, UnitState, check_transition
from tests.supervisor.manager_harness import SH, run_manager, service, until


def test_every_state_has_a_row_and_may_fail() -> None:
    assert set(ALLOWED) == set(UnitState)
    for state in UnitState:
        check_transition(state, UnitState.FAILED, "x.service")
        check_transition(state, state, "x.service")  # a new reason only


@pytest.mark.parametrize(("old", "new"), [
    (UnitState.INACTIVE, UnitState.RUNNING),  # never running without starting
    (UnitState.BACKOFF, UnitState.RUNNING),
    (UnitState.STOPPING, UnitState.RUNNING),
    (UnitState.RUNNING, UnitState.STARTING),
    (UnitState.REPAIRING, UnitState.RUNNING),
])
def test_a_disallowed_transition_is_refused_by_name(old: UnitState, new: UnitState) -> None:
    with pytest.raises(InvalidTransition, match=f"demo.service: {old} → {new}"):
        check_transition(old, new, "demo.service")


def test_a_real_units_life_stays_in_the_table(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    class Recorder:
        from llm_supervisor.plugins.hookspecs import hookimpl

        @hookimpl
        def unit_state_changed(self, unit: object, old: str, new: str, reason: str) -> None:
            seen.append((old, new))

    flag = tmp_path / "crash-once"
    flag.write_text("")
    crash_once = f"{SH} -c 'if [ -e {flag} ]; then rm {flag}; exit 3; fi; exec sleep 30'"

    async def scenario(manager: Manager) -> None:
        runner = manager.runners["demo.service"]
        await manager.start_target("stack.target")
        await until(lambda: runner.restarts >= 1 and runner.state == UnitState.RUNNING,
                    "a crash, backoff and restart")
        await manager.stop_unit("demo")
        await until(lambda: runner.state == UnitState.INACTIVE, "stopped")
        await asyncio.sleep(0)

    run_manager(tmp_path, {"demo.service": service(crash_once)}, [Recorder()], scenario)
    states = {(UnitState(old), UnitState(new)) for old, new in seen}
    assert (UnitState.RUNNING, UnitState.BACKOFF) in states
    assert (UnitState.BACKOFF, UnitState.STARTING) in states
    for old, new in states:
        assert new == UnitState.FAILED or new in ALLOWED[old], (old, new)
    assert UnitState.FAILED not in {new for _, new in states}
