"""What a unit's main process started goes with it (issue 18, "also": systemd's
``KillMode=control-group``): a main process that exits cleanly leaves no grandchild running —
neither one in its process group nor one that left it with ``setsid`` — until the unit is
stopped; the unit's log says what was stopped. Real daemon, real processes."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.daemon_harness import Daemon, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie waiting for its reaper counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def test_grandchildren_of_a_cleanly_exiting_unit_are_stopped(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    daemon = Daemon(tmp_path / "d")
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit("spawner.service", (
        "[Service]\nRestart=no\nExecStart=/bin/sh -c '"
        f"sleep 1000 & echo $! >> {pids_file}; "
        f"setsid sleep 1001 & echo $! >> {pids_file}; exit 0'\n"
        "[Install]\nWantedBy=stack.target\n"))
    daemon.start()
    pids: list[int] = []
    try:
        wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2, 30,
                 "the grandchildren's pids")
        pids = [int(p) for p in pids_file.read_text().split()]
        wait_for(lambda: daemon.unit("spawner")["state"] in ("inactive", "exited"), 15,
                 "the unit to finish", diagnostics=lambda: str(daemon.unit("spawner")))
        wait_for(lambda: not any(_alive(pid) for pid in pids), 10,
                 "the grandchildren to be stopped")
        log = daemon.client.request("GET", "/units/spawner/logs", params={"tail": 20}).text
        assert "KillMode=control-group" in log
        assert daemon.unit("spawner")["last_exit"]["code"] == 0
    finally:
        daemon.stop()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
