"""A root daemon's defaults (issue 18, item 7): its state dir is ``/var/lib/llm-supervisor``
(as systemd's ``StateDirectory=``), not one under ``/root`` that the unit user cannot reach; and
when the units must run as root anyway (this venv's interpreter out of the unit user's reach),
``llm-supervisord start --wait`` says so in its summary, not only in the daemon's log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from llm_supervisor.daemon import unit_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root's defaults")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLM_SUPERVISOR_", "XDG_STATE_HOME", "UNIT_USER"))}
    return {**env, **extra}


def test_roots_default_state_dir_is_var_lib() -> None:
    shown = subprocess.run(
        [sys.executable, "-P", "-c",
         "from llm_supervisor.config import load_settings; print(load_settings().state_dir)"],
        env=_env(HOME="/root", XDG_STATE_HOME="/root/.local/state"), cwd="/",
        capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "/var/lib/llm-supervisor"


def test_start_wait_says_when_units_run_as_root(tmp_path: Path) -> None:
    state = tmp_path / "state"
    probe = SimpleNamespace(resolved_unit_user="llm-supervisor", unit_user=None, state_dir=state)
    if unit_user.fallback_reason(probe) is None:
        pytest.skip("the unit user can reach this interpreter here: nothing to report")
    units = tmp_path / "units"
    units.mkdir()
    (units / "stack.target").write_text("[Unit]\nDescription=test stack\n")
    (units / "idle.service").write_text("[Service]\nExecStart=/bin/sleep 1000\n"
                                        "[Install]\nWantedBy=stack.target\n")
    env = _env(LLM_SUPERVISOR_STATE_DIR=str(state), LLM_SUPERVISOR_UNITS_DIR=str(units),
               LLM_SUPERVISOR_RUNTIME="process", DASHBOARD_PORT="0", TERM="dumb",
               COLUMNS="200")
    daemon = str(Path(sys.executable).parent / "llm-supervisord")
    try:
        done = subprocess.run([daemon, "start", "--wait", "30"], env=env, cwd="/",
                              capture_output=True, text=True, timeout=120)
        summary = " ".join(done.stdout.split())
        assert "units run as root, not llm-supervisor:" in summary, done.stdout + done.stderr
        assert "is out of its reach" in summary
    finally:
        subprocess.run([daemon, "stop"], env=env, cwd="/", capture_output=True, timeout=90)
