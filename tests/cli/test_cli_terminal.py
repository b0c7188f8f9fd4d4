"""The live views on a real terminal (a pty): start --wait's live table, monitor --live until
Ctrl-C."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR, Daemon

UNIT = ("[Service]\nExecStart=/bin/sh -c 'while true; do echo tick; sleep 0.5; done'\n"
        "[Install]\nWantedBy=stack.target\n")


def _spawn(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    leader, follower = pty.openpty()
    env = {**env, "COLUMNS": "150", "LINES": "40", "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, env=env, stdin=follower, stdout=follower, stderr=follower,
                            cwd=PROJECT_DIR, close_fds=True, start_new_session=True)
    os.close(follower)
    return proc, leader


def _read(leader: int, until: float) -> bytes:
    output = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    return output


def test_start_wait_and_monitor_live_on_a_terminal(tmp_path: Path):
    (tmp_path / "none.toml").write_text("")
    daemon = Daemon(tmp_path, {"LLM_SUPERVISOR_CONFIG": str(tmp_path / "none.toml"),
                               "DASHBOARD_PORT": "0"})
    daemon.write_unit("stack.target", "[Unit]\n")
    daemon.write_unit("ticker.service", UNIT)
    proc, leader = _spawn([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start",
                           "--wait", "60"], daemon.env)
    try:
        output = b""
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            output += _read(leader, time.monotonic() + 0.5)
        output += _read(leader, time.monotonic() + 0.5)
        assert proc.wait(5) == 0, output.decode(errors="replace")
    finally:
        os.close(leader)
    text = output.decode(errors="replace")
    assert "\x1b[" in text  # a terminal gets colours and the live table
    assert "ticker" in text and "running" in text and "llm-supervisord stop" in text

    try:
        proc, leader = _spawn([sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                               str(daemon.socket), "monitor", "--containers", "--logs",
                               "--live", "1"], daemon.env)
        screen = _read(leader, time.monotonic() + 4).decode(errors="replace")
        assert proc.poll() is None  # still live
        assert screen.count("containers") >= 2, screen  # redrawn at least once
        assert "tick" in screen
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(10) == 0
        os.close(leader)
    finally:
        if proc.poll() is None:
            proc.kill()
        daemon.ctl("shutdown")
