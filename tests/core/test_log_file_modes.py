"""Logs are not world-readable (issue 18, item 9): unit logs and the daemon's log are 0640 in a
0750 log directory, group of the daemon — a new file, a file an older version made 0644 (and an
0755 logs directory), and every rotated file. Real daemon for the unit log, real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from llm_supervisor.core.rotating_file import RotatingFile
from llm_supervisor.runtimes.logs import UnitLog
from tests.daemon_harness import Daemon, wait_for


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_and_rotated_log_files_are_0640_in_a_0750_directory(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        log = RotatingFile(tmp_path / "logs" / "a.log", max_bytes=64, backups=2)
        for _ in range(10):
            log.write(b"x" * 40 + b"\n")
    finally:
        os.umask(old_umask)
    files = sorted((tmp_path / "logs").iterdir())
    assert [p.name for p in files] == ["a.log", "a.log.1", "a.log.2"]
    assert all(_mode(p) == 0o640 for p in files), [oct(_mode(p)) for p in files]
    assert all(p.stat().st_gid == os.getegid() for p in files)
    assert _mode(tmp_path / "logs") == 0o750


def test_an_older_world_readable_log_and_directory_are_tightened(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    logs.chmod(0o755)
    old = logs / "web.log"
    old.write_text("from an older version\n")
    old.chmod(0o644)
    UnitLog(old).write(b"more\n")
    assert _mode(old) == 0o640
    assert _mode(logs) == 0o750


def test_a_daemons_unit_log_is_not_world_readable(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit("talk.service", "[Service]\nExecStart=/bin/sh -c 'echo hi; sleep 1000'\n"
                      "[Install]\nWantedBy=stack.target\n")
    old_umask = os.umask(0o022)
    try:
        daemon.start()
    finally:
        os.umask(old_umask)
    try:
        log = daemon.state_dir / "logs" / "talk.log"
        wait_for(lambda: log.exists() and "hi" in log.read_text(), 30, "talk's log")
        assert _mode(log) == 0o640
        assert _mode(log.parent) == 0o750
    finally:
        daemon.stop()
