"""``llm-supervisorctl monitor`` views and ``logs --all [-f]`` against a real daemon."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR, Daemon, free_port, wait_for

TALKER = ("[Service]\nExecStart=/bin/sh -c 'i=0; while true; do echo {tag} $i; i=$((i+1)); "
          "sleep {pause}; done'\n[Install]\nWantedBy=stack.target\n")


def _talkers(daemon: Daemon) -> None:
    daemon.write_unit("alpha.service", TALKER.format(tag="alpha", pause=0.13))
    daemon.write_unit("beta.service", TALKER.format(tag="beta", pause=0.21))


def _stamp(line: str) -> datetime:
    return datetime.strptime(line.split(" ", 1)[0], "%H:%M:%S.%f")


def test_logs_all_merges_every_unit_by_time(cli_daemon: Daemon):
    _talkers(cli_daemon)
    cli_daemon.start()
    wait_for(lambda: "beta 6" in cli_daemon.ctl("logs", "--all", "-n", "200").stdout, 30,
             "both units' output")
    out = cli_daemon.ctl("logs", "--all", "-n", "200", check=True).stdout
    lines = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line)]
    units = [line.split()[1] for line in lines]
    assert "alpha" in units and "beta" in units
    # interleaved, not one unit's block after the other's
    switches = sum(1 for a, b in zip(units, units[1:], strict=False) if a != b)
    assert switches >= 4, out
    stamps = [_stamp(line) for line in lines]
    assert stamps == sorted(stamps)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines if line.split()[1] == "alpha"
               and line.rsplit(" ", 1)[1].isdigit()]
    assert numbers == sorted(numbers)
    assert len(cli_daemon.ctl("logs", "--all", "-n", "3").stdout.splitlines()) == 3


def test_logs_all_follow_streams_new_lines_of_every_unit(cli_daemon: Daemon):
    _talkers(cli_daemon)
    cli_daemon.start()
    cli_daemon.wait_state("beta", "running")
    proc = subprocess.Popen([sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                             str(cli_daemon.socket), "logs", "--all", "-f", "-n", "0"],
                            env=cli_daemon.env, stdout=subprocess.PIPE, text=True,
                            cwd=PROJECT_DIR)
    seen: set[str] = set()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while seen != {"alpha", "beta"} and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line:
                seen.add(line.split()[1])
    finally:
        proc.kill()
        proc.wait()
    assert seen == {"alpha", "beta"}


def test_monitor_views_and_their_combination(cli_daemon: Daemon, tmp_path: Path):
    port = free_port()
    cli_daemon.write_unit("web.service", (
        f"[Service]\nExecStart={sys.executable} -m http.server {port} --bind 127.0.0.1\n"
        "[Install]\nWantedBy=stack.target\n"))
    _talkers(cli_daemon)
    cli_daemon.start()
    cli_daemon.wait_state("web", "running")
    wait_for(lambda: f"127.0.0.1:{port}" in cli_daemon.ctl("monitor", "--network").stdout, 30,
             "the web unit's listening port")

    summary = cli_daemon.ctl("monitor", check=True).stdout  # --summary is the default
    assert "summary" in summary and "3 running" in summary and "UNIT" in summary

    network = cli_daemon.ctl("monitor", "--network", check=True).stdout
    row = next(line for line in network.splitlines() if line.startswith("web "))
    assert f"127.0.0.1:{port}" in row

    combined = cli_daemon.ctl("monitor", "--containers", "--logs", "-n", "5", check=True).stdout
    assert combined.index("containers") < combined.index("logs")
    web = next(line for line in combined.splitlines() if line.startswith("web "))
    assert re.search(r"\d+\.\d%", web) and re.search(r"\d+(\.\d)?M", web)
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} (alpha|beta) ", combined)

    novnc = cli_daemon.ctl("monitor", "--novnc", check=True).stdout
    assert "noVNC" in novnc and "xvfb" in novnc and "not installed" in novnc


def test_monitor_live_refreshes_at_the_given_interval(cli_daemon: Daemon):
    _talkers(cli_daemon)
    cli_daemon.start()
    proc = subprocess.Popen([sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                             str(cli_daemon.socket), "monitor", "--containers", "--live", "1"],
                            env=cli_daemon.env, stdout=subprocess.PIPE, text=True,
                            cwd=PROJECT_DIR)
    refreshes: list[float] = []
    try:
        assert proc.stdout is not None
        while len(refreshes) < 3:
            line = proc.stdout.readline()
            assert line, "monitor --live ended"
            if re.match(r"─+ \d\d:\d\d:\d\d ─+", line.strip()):
                refreshes.append(time.monotonic())
    finally:
        proc.kill()
        proc.wait()
    gaps = [b - a for a, b in zip(refreshes, refreshes[1:], strict=False)]
    assert all(0.8 < gap < 4 for gap in gaps), gaps
