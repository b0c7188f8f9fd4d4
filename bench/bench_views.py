"""How long the operator views take for a stack of many units (target: under 100 ms for 200).

A real daemon runs N units (``sleep`` processes, so CPU/memory sampling has real process trees);
measured, median of --runs each:

- ``GET /units`` on the control socket (the daemon builds every status, CPU and memory included);
- rendering the ``status`` table from that JSON (rich, to a string, as the CLI prints it);
- the dashboard's ``GET /api/units`` and ``GET /api/overview`` over HTTP (JSON the page shows);
- building + serialising one dashboard snapshot in-process from the same JSON (the SSE payload);
- ``llm-supervisorctl status`` wall time (Python start-up included, for reference).

    .venv/bin/python bench/bench_views.py [--units 200] [--runs 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console

from llm_supervisor.cli.client import ControlClient, DaemonNotRunning
from llm_supervisor.cli.render import status_table

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def median_ms(func: Callable[[], object], runs: int, pause: float = 0.0) -> float:
    """``pause`` before each run lets the daemon's process-table scan (kept 0.5 s) expire, so
    every measured call pays for it."""
    func()  # warm-up (first CPU sample, connections)
    times = []
    for _ in range(runs):
        time.sleep(pause)
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def render_table(units: list[dict]) -> str:
    console = Console(file=io.StringIO(), width=160, color_system="truecolor")
    console.print(status_table(units))
    return console.file.getvalue()  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        root = Path(tmp)
        units_dir, state_dir = root / "units", root / "state"
        units_dir.mkdir()
        (units_dir / "stack.target").write_text("[Unit]\n")
        for index in range(args.units):
            (units_dir / f"unit{index:03d}.service").write_text(
                f"[Unit]\nDescription=bench unit {index}\n[Service]\nExecStart=/bin/sleep 100000\n"
                "[Install]\nWantedBy=stack.target\n")
        port = free_port()
        env = {**os.environ, "LLM_SUPERVISOR_STATE_DIR": str(state_dir),
               "LLM_SUPERVISOR_UNITS_DIR": str(units_dir), "LLM_SUPERVISOR_RUNTIME": "process",
               "DASHBOARD_PORT": str(port), "LLM_SUPERVISOR_CONFIG": str(root / "none.toml")}
        (root / "none.toml").write_text("")
        log = open(root / "daemon.log", "wb")  # noqa: SIM115 - handed to the daemon
        daemon = subprocess.Popen([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start",
                                   "--foreground"], env=env, stdout=log, stderr=log, cwd=ROOT)
        client = ControlClient(state_dir / "supervisor.sock", timeout=60)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    units = client.get("/units")
                    if sum(u["state"] == "running" for u in units) == args.units:
                        break
                except DaemonNotRunning:
                    pass
                time.sleep(0.2)
            else:
                print("units did not all start; see", root / "daemon.log")
                return 1
            dashboard = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            units = client.get("/units")
            from llm_supervisor.dashboard import snapshot  # noqa: F401 - import cost not measured

            results = {
                "GET /units (control socket)": median_ms(lambda: client.get("/units"), args.runs,
                                                         pause=0.6),
                "render status table": median_ms(lambda: render_table(units), args.runs),
                "GET /units + render (status)": median_ms(
                    lambda: render_table(client.get("/units")), args.runs, pause=0.6),
                "dashboard GET /api/units": median_ms(
                    lambda: dashboard.get("/api/units").json(), args.runs, pause=0.6),
                "dashboard GET /api/overview": median_ms(
                    lambda: dashboard.get("/api/overview").json(), args.runs),
                "snapshot JSON (in-process)": median_ms(
                    lambda: json.dumps({"units": units, "model": {}, "routes": [], "links": {},
                                        "logs": []}), args.runs),
            }
            ctl = [sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                   str(state_dir / "supervisor.sock"), "status"]
            results["llm-supervisorctl status (wall, incl. Python start)"] = median_ms(
                lambda: subprocess.run(ctl, env=env, capture_output=True, check=True),
                max(3, args.runs // 4))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(120)
            log.close()
    print(f"{args.units} units, median of {args.runs} runs (target < 100 ms for the views)")
    for name, value in results.items():
        print(f"  {name:<52} {value:8.1f} ms")
    within = max(results["GET /units + render (status)"], results["dashboard GET /api/units"])
    print(f"  slowest view: {within:.1f} ms -> {'OK' if within < 100 else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
