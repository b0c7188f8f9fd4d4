"""``llm-supervisorctl status | head -1``: a reader that leaves early ends the CLI quietly with
128 + SIGPIPE, as cat or ls do, instead of a BrokenPipeError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import sleeper_daemon


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    daemon = sleeper_daemon(tmp_path)
    try:
        ctl = [str(Path(sys.executable).parent / "llm-supervisorctl"), "--socket", str(daemon.socket)]
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first line
        try:
            done = subprocess.run([*ctl, "status"], stdout=write_end, stderr=subprocess.PIPE,
                                  text=True, timeout=60)
        finally:
            os.close(write_end)
        into_a_reader = subprocess.run([*ctl, "status"], capture_output=True, text=True,
                                       timeout=60)
    finally:
        daemon.stop()
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
    assert into_a_reader.returncode == 0 and "sleeper" in into_a_reader.stdout
