"""llm-supervisord against supervisord (and circus) on this machine, in one run; prints figures,
ratios against the peer measured in the same run, and each target's verdict:

- **the shipped stack**: our daemon runs the shipped unit files; then supervisord runs the very
  same programs (argv, cwd, environment, user read from /proc; stack_programs.py). Each
  supervisor's own RSS (target ≤ 1.5×) and ``…ctl status`` wall time (target ≤ 0.5×);
- **restart**: one HTTP program SIGKILLed, time until it answers again, measured from outside;
- **1,000 units** (busybox httpd each, TCP checks): time to all healthy (≤ 10 s), ``status`` of
  all of them through the socket and the CLI (≤ 100 ms), the daemon's idle CPU (≤ 2 % of a core);
- **imports**: ``python -X importtime`` of the daemon (while it ran the stack) and of
  ``llm-supervisorctl status``, summed per package, and the memory the daemon's heaviest
  third-party imports add on their own (importcost.py).

    .venv/bin/python bench/bench_supervisor.py [--only stack|restart|many|imports ...]
        [--runs 10] [--status-runs 15] [--units 1000] [--idle 10]

supervisord 4.3 (and circus) come from the ``bench`` extra (``pip install -e '.[bench]'``); a
missing one is reported and left out. Each is set up as its docs recommend for the job
(supervisord ``autorestart=true``, and ``startsecs=0`` for the restart race; circus defaults;
ours ``RestartSec=0`` there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import importcost
import psutil
import stack_programs
from stack_programs import StackResult

from llm_supervisor.core.lean_imports import UNUSED_EXTRAS
from llm_supervisor.plugins.manager import DEFAULT_PLUGINS

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "tests" / "programs" / "tiny_http.py"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.002) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if predicate():
                return time.perf_counter() - start
        except Exception:
            pass
        time.sleep(poll)
    raise TimeoutError("condition not met")


def program_pid(port: int) -> int | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if str(PROGRAM) in cmd and str(port) in cmd:
            return proc.pid
    return None


def answering(port: int, not_pid: int | None = None) -> bool:
    if httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5).status_code != 200:
        return False
    return not_pid is None or program_pid(port) not in (None, not_pid)


def restart_times(port: int, runs: int) -> list[float]:
    wait_until(lambda: answering(port), 30)
    times = []
    for _ in range(runs):
        pid = program_pid(port)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        started = time.perf_counter()
        wait_until(lambda pid=pid: answering(port, pid), 30)
        times.append(time.perf_counter() - started)
        time.sleep(0.3)
    return times


def timed(argv: list[str], env: dict[str, str] | None = None, n: int = 5) -> float:
    walls = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def round_trip_p50(call: Callable[[], object], n: int = 200) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(proc: subprocess.Popen[bytes], port: int, runs: int, status_argv: list[str],
            env: dict[str, str] | None = None, control_call: Callable[[], object] | None = None
            ) -> dict[str, float]:
    """The same four figures for every supervisor; ``proc`` is stopped afterwards."""
    try:
        restarts = restart_times(port, runs)
        return {"restart": statistics.median(restarts), "status": timed(status_argv, env),
                "rtt": round_trip_p50(control_call) if control_call else float("nan"),
                "rss": rss_mb(proc.pid)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


# ------------------------------------------------------------------------------- ours
def write_unit(units: Path, name: str, command: str, check: str) -> None:
    (units / f"{name}.service").write_text(
        f"[Service]\nExecStart={command}\nRestartSec=0\nStartLimitBurst=0\n"
        f"[Health]\nCheck={check}\nInterval=2\n[Install]\nWantedBy=stack.target\n")


def start_ours(work: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {**os.environ, "LLM_SUPERVISOR_STATE_DIR": str(work / "state"),
           "LLM_SUPERVISOR_UNITS_DIR": str(work / "units"), "LLM_SUPERVISOR_RUNTIME": "process"}
    proc = subprocess.Popen([str(BIN / "llm-supervisord"), "start", "--foreground"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = work / "state" / "supervisor.sock"
    wait_until(sock.exists, 30)
    return proc, env


def bench_ours(runs: int) -> dict[str, float]:
    from llm_supervisor.cli.client import ControlClient

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "units").mkdir()
        (work / "units" / "stack.target").write_text("[Unit]\n")
        port = free_port()
        write_unit(work / "units", "web", f"{sys.executable} {PROGRAM} {port}",
                   f"http://127.0.0.1:{port}/")
        proc, env = start_ours(work)
        client = ControlClient(work / "state" / "supervisor.sock")
        return measure(proc, port, runs, [str(BIN / "llm-supervisorctl"), "status"], env,
                       lambda: client.get("/units"))


def bench_ours_many(count: int, status_runs: int, idle_s: float) -> dict[str, Any]:
    """``count`` units, each a light HTTP server with a TCP check: start → all healthy; then
    ``status`` of all of them (CLI wall and the socket's ``GET /units``), the daemon's idle CPU
    over ``idle_s`` seconds and its RSS."""
    from llm_supervisor.cli.client import ControlClient

    busybox = shutil.which("busybox")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        units = work / "units"
        units.mkdir()
        (units / "stack.target").write_text("[Unit]\n")
        www = work / "www"
        www.mkdir()
        ports: set[int] = set()
        while len(ports) < count:  # free_port() can hand out the same port twice in many calls
            ports.add(free_port())
        for index, port in enumerate(sorted(ports)):
            command = (f"{busybox} httpd -f -p 127.0.0.1:{port} -h {www}" if busybox else
                       f"{sys.executable} -m http.server {port} --bind 127.0.0.1")
            write_unit(units, f"u{index:04d}", command, f"tcp://127.0.0.1:{port}")
        started = time.perf_counter()
        proc, env = start_ours(work)
        client = ControlClient(work / "state" / "supervisor.sock", timeout=120)
        try:
            healthy_count = 0

            def all_healthy() -> bool:
                nonlocal healthy_count
                healthy_count = sum(u["health"] == "healthy" for u in client.get("/units"))
                return healthy_count == count

            try:
                wait_until(all_healthy, 300, poll=0.1)
            except TimeoutError:
                raise TimeoutError(f"only {healthy_count} of {count} units healthy after "
                                   "300 s") from None
            healthy = time.perf_counter() - started
            time.sleep(2)  # let the start-up burst pass before sampling idle CPU
            daemon = psutil.Process(proc.pid)
            cpu_before, idle_started = daemon.cpu_times(), time.perf_counter()
            time.sleep(idle_s)
            cpu_after, idle_took = daemon.cpu_times(), time.perf_counter() - idle_started
            busy = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
            return {"healthy": healthy, "rss": rss_mb(proc.pid),
                    "idle_cpu_pct": 100 * busy / idle_took,
                    "status_cli": timed([str(BIN / "llm-supervisorctl"), "status"], env,
                                        status_runs),
                    "status_socket": round_trip_p50(lambda: client.get("/units"), status_runs),
                    "program": "busybox httpd" if busybox else "python http.server"}
        finally:
            client.close()
            stop_tree(proc, 600)


# ------------------------------------------------------------------------------- peers
def bench_supervisord(runs: int) -> dict[str, float] | None:
    if not (BIN / "supervisord").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        conf = work / "supervisord.conf"
        conf.write_text(f"""[unix_http_server]
file={work}/supervisor.sock
[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
nodaemon=true
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{work}/supervisor.sock
[program:web]
command={sys.executable} {PROGRAM} {port}
autorestart=true
startsecs=0
""")
        proc = subprocess.Popen([str(BIN / "supervisord"), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        transport = httpx.HTTPTransport(uds=str(work / "supervisor.sock"))
        body = ("<?xml version='1.0'?><methodCall><methodName>supervisor.getAllProcessInfo"
                "</methodName><params></params></methodCall>")
        with httpx.Client(transport=transport, base_url="http://localhost") as client:
            return measure(proc, port, runs, [str(BIN / "supervisorctl"), "-c", str(conf), "status"],
                           control_call=lambda: client.post(
                               "/RPC2", content=body, headers={"Content-Type": "text/xml"}))


def bench_circus(runs: int) -> dict[str, float] | None:
    if not (BIN / "circusd").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port, endpoint, pubsub = free_port(), free_port(), free_port()
        conf = work / "circus.ini"
        conf.write_text(f"""[circus]
endpoint = tcp://127.0.0.1:{endpoint}
pubsub_endpoint = tcp://127.0.0.1:{pubsub}
statsd = false
[watcher:web]
cmd = {sys.executable} {PROGRAM} {port}
numprocesses = 1
""")
        proc = subprocess.Popen([str(BIN / "circusd"), str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        return measure(proc, port, runs, [str(BIN / "circusctl"), "--endpoint",
                                          f"tcp://127.0.0.1:{endpoint}", "status"])


def stop_tree(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the daemon and wait; past ``timeout``, SIGKILL it and every process under it
    (stopping 1,000 units on a loaded machine can take minutes)."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"the daemon did not stop within {timeout:.0f} s: killing it and its "
              f"{len(tree)} processes", file=sys.stderr)
        for process in [psutil.Process(proc.pid), *tree]:
            with contextlib.suppress(psutil.Error):
                process.kill()
        proc.wait(30)


class Printed(list[str]):
    """Report lines, printed as they come: a part that fails later keeps the earlier ones."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)

    def __iadd__(self, more: Iterable[str]) -> Printed:  # type: ignore[override]
        for line in more:
            self.append(line)
        return self


def bench_stack(status_runs: int) -> tuple[StackResult, StackResult | None, str]:
    """(ours, supervisord or None, our daemon's -X importtime stderr) on the shipped stack."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours, programs = stack_programs.ours(work / "ours", status_runs)
        (work / "peer").mkdir()
        peer = stack_programs.supervisord(work / "peer", programs, status_runs)
        return ours, peer, (work / "ours" / "daemon.stderr").read_text(errors="replace")


def cli_import_profile(socket_env: dict[str, str]) -> str:
    """``llm-supervisorctl status`` under ``-X importtime`` (against a live daemon)."""
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "llm_supervisor.cli.ctl",
                           "status"], env=socket_env, capture_output=True, text=True,
                          timeout=60).stderr


def ratio(ours: float, peer: float, target: float, unit: str = "") -> str:
    value = ours / peer
    verdict = "meets" if value <= target else "MISSES"
    return f"{value:.2f}× ({ours:.3f}{unit} vs {peer:.3f}{unit}; target ≤ {target}×: {verdict})"


def verdict(value: float, target: float) -> str:
    return "meets" if value <= target else "MISSES"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="kills per supervisor (restart)")
    parser.add_argument("--status-runs", type=int, default=15, help="status calls per median")
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU sampling")
    parser.add_argument("--only", choices=["stack", "restart", "many", "imports"], action="append",
                        help="run only these parts (repeatable); default: all")
    args = parser.parse_args()
    parts = set(args.only or ["stack", "restart", "many", "imports"])
    lines = Printed()

    if "stack" in parts or "imports" in parts:
        ours, peer, daemon_stderr = bench_stack(args.status_runs)
        lines.append(f"== the shipped stack: {len(ours.programs)} programs "
                     f"({', '.join(ours.programs)})")
        for result in (ours, peer):
            if result is None:
                lines.append("supervisord       not installed (pip install -e '.[bench]')")
                continue
            lines.append(f"{result.supervisor:18}daemon RSS {result.rss_mb:6.1f} MB   "
                         f"ctl status {result.status_s * 1000:6.1f} ms   "
                         f"{len(result.running)}/{len(result.programs)} running"
                         + (f"   ({result.note})" if result.note else ""))
        if peer is not None:
            lines.append(f"ratio RSS:    {ratio(ours.rss_mb, peer.rss_mb, 1.5, ' MB')}")
            lines.append(f"ratio status: {ratio(ours.status_s, peer.status_s, 0.5, ' s')}")
        if "imports" in parts:
            lines += import_report(daemon_stderr)

    if "restart" in parts:
        results = {"llm-supervisord": bench_ours(args.runs),
                   "supervisord": bench_supervisord(args.runs), "circus": bench_circus(args.runs)}
        lines.append(f"\n== restart: one HTTP program, SIGKILL → answering again (median of "
                     f"{args.runs})")
        lines.append(f"{'':18}{'restart→HTTP':>14}{'ctl status':>12}{'socket p50':>12}"
                     f"{'daemon RSS':>12}")
        for name, result in results.items():
            if result is None:
                lines.append(f"{name:18}  not installed (pip install -e '.[bench]')")
                continue
            lines.append(f"{name:18}{result['restart']:>13.3f}s{result['status']:>11.3f}s"
                         f"{result['rtt'] * 1000:>10.2f}ms{result['rss']:>10.1f}MB")
        base, mine = results["supervisord"], results["llm-supervisord"]
        if base:
            lines.append(f"ratio restart: {ratio(mine['restart'], base['restart'], 0.7, ' s')}")
            lines.append(f"ratio status (one unit): "
                         f"{ratio(mine['status'], base['status'], 0.5, ' s')}")

    if "many" in parts:
        many = bench_ours_many(args.units, args.status_runs, args.idle)
        lines.append(f"\n== {args.units} units ({many['program']}, TCP checks every 2 s)")
        lines.append(f"all healthy in      {many['healthy']:8.2f} s    (target ≤ 10 s: "
                     f"{verdict(many['healthy'], 10)})")
        lines.append(f"status, socket      {many['status_socket'] * 1000:8.1f} ms   (GET /units, "
                     f"median; target ≤ 100 ms: {verdict(many['status_socket'], 0.1)})")
        lines.append(f"status, CLI wall    {many['status_cli'] * 1000:8.1f} ms   "
                     f"(llm-supervisorctl status, median; target ≤ 100 ms: "
                     f"{verdict(many['status_cli'], 0.1)})")
        lines.append(f"idle CPU            {many['idle_cpu_pct']:8.2f} %    (of one core over "
                     f"{args.idle:.0f} s; target ≤ 2 %: {verdict(many['idle_cpu_pct'], 2)})")
        lines.append(f"daemon RSS          {many['rss']:8.1f} MB")


def import_report(daemon_stderr: str) -> list[str]:
    """Where the daemon's and the CLI's start-up time goes, and what the big imports weigh."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "units").mkdir()
        (work / "units" / "stack.target").write_text("[Unit]\n")
        proc, env = start_ours(work)
        try:
            cli_stderr = cli_import_profile(env)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    daemon = importcost.parse(daemon_stderr)
    cli = importcost.parse(cli_stderr)
    lines = ["\n== python -X importtime (self time summed per top-level package)"]
    lines += importcost.render("daemon (shipped stack)", daemon)
    lines += importcost.render("CLI (llm-supervisorctl status)", cli)
    # the daemon's imports, in its order: what start-up imports, then the built-in plugins
    steps = ["asyncio", "structlog", "httpx", "sanic", "pydantic_settings",
             "llm_supervisor.config.settings", "psutil", "pluggy", "yaml", "prometheus_client",
             "llm_supervisor.daemon.server", *DEFAULT_PLUGINS]
    lines.append("what the daemon's memory is made of: RSS each import adds, in the daemon's "
                 f"order ({', '.join(UNUSED_EXTRAS)} hidden, as in the daemon):")
    rows = importcost.memory_in_order(steps, UNUSED_EXTRAS)
    for name, mb in rows:
        lines.append(f"  {name:44}{mb:>7.1f} MB")
    lines.append(f"  {'all imports':44}{sum(mb for _, mb in rows):>7.1f} MB")
    return lines


if __name__ == "__main__":
    main()
