"""The shipped xvfb unit is ready only once its display answers, so x11vnc (After=xvfb) never
starts before the display exists: on a fresh state directory it starts once, never exits 69."""

from __future__ import annotations

from pathlib import Path

from tests.daemon_harness import free_port
from tests.gateway.supervisor_daemon import Daemon, require_programs  # noqa: E402


def test_x11vnc_waits_for_the_display(tmp_path: Path) -> None:
    require_programs("Xvfb", "x11vnc")
    daemon = Daemon(tmp_path, ["xvfb.service", "x11vnc.service"],
                    {"VNC_PORT": str(free_port()), "UNIT_USER": "root"})
    daemon.write_unit("stack.target", "[Unit]\nDescription=desktop only\n")
    daemon.start()
    try:
        xvfb = daemon.wait_ready("xvfb", 40)
        assert xvfb["health"] == "healthy"  # it has a readiness check
        x11vnc = daemon.wait_ready("x11vnc", 40)
        log = daemon.unit_log("x11vnc", 200)
        assert x11vnc["restarts"] == 0 and "is not up" not in log, log
        assert "exited 69" not in log
    finally:
        daemon.stop()
