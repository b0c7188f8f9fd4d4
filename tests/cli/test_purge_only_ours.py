"""``stop --purge`` removes only what the daemon created (issue 18, item 11): with a state dir
that already held the user's own ``logs/`` and ``models/`` (``STATE_DIR=$HOME``, say), those and
everything in them survive a purge, and the purge says it kept them; what the daemon created
there (``gateway/``, ``home/``, ``desktop/``, its own log) is removed. Real daemon, real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llm_supervisor.config.state_ledger import LEDGER_NAME, created_entries
from tests.daemon_harness import PROJECT_DIR, Daemon, wait_for


def test_purge_keeps_what_was_there_before_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    daemon = Daemon(tmp_path, {"LLM_SUPERVISOR_CONFIG": str(tmp_path / "none.toml"),
                               "DASHBOARD_PORT": "0"})
    state = daemon.state_dir
    users = [state / "logs" / "my-notes.txt", state / "models" / "my-model" / "weights.bin"]
    for path in users:
        path.parent.mkdir(parents=True)
        path.write_text("the user's\n")
    daemon.write_unit("stack.target", "[Unit]\n")
    daemon.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n"
                      "[Install]\nWantedBy=stack.target\n")
    ours = state / "home" / ".cache" / "blob"
    started = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start"],
                             env=daemon.env, capture_output=True, text=True, timeout=120,
                             cwd=PROJECT_DIR, stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stdout + started.stderr
    wait_for(lambda: daemon.unit("idle")["state"] == "running", 30, "the unit")
    recorded = created_entries(state)
    assert "logs" not in recorded and "models" not in recorded
    assert {"home", "gateway", "daemon.log"} <= recorded
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_bytes(b"x")

    done = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "stop",
                           "--purge", "--yes"], env=daemon.env, capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_DIR, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in users:
        assert path.read_text() == "the user's\n", f"{path} was removed"
    assert f"kept: {state / 'logs'} (there before llm-supervisord" in done.stdout
    assert not (state / "home").exists() and not (state / "gateway").exists()
    assert not (state / "daemon.log").exists()
    assert "home" not in created_entries(state)
    assert (state / LEDGER_NAME).exists()
