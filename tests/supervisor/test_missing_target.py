"""A units directory whose WantedBy= target has no file: the daemon starts nothing, and says so
where the user looks: each unit's status reason, ``/ping`` and ``start --wait``'s exit code;
creating the target and reloading, as the message says, brings the units up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR, Daemon


def test_start_wait_says_the_target_is_missing(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)  # no stack.target written
    daemon.write_unit("a.service", "[Service]\nExecStart=/bin/sleep 300\n"
                                   "[Install]\nWantedBy=stack.target\n")
    started = subprocess.run(
        [sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start", "--wait", "20"],
        env={**daemon.env, "COLUMNS": "300"}, cwd=PROJECT_DIR, capture_output=True, text=True,
        timeout=120)
    try:
        output = started.stdout + started.stderr
        assert started.returncode == 1, output
        assert "target not found" in output and "stack.target has no unit file" in output, output
        unit = daemon.unit("a")
        assert unit["state"] == "inactive"
        assert unit["reason"].startswith("not started: stack.target has no unit file in")
        assert daemon.client.get("/ping")["target_error"]
        # Doing what the message says brings it up.
        daemon.write_unit("stack.target", "[Unit]\nDescription=now there\n")
        daemon.client.post("/reload")
        daemon.wait_state("a", "running", timeout=30)
        assert daemon.client.get("/ping")["target_error"] is None
    finally:
        subprocess.run([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "stop"],
                       env=daemon.env, capture_output=True, timeout=120)
