"""llm-supervisord vs supervisord vs circus on the same trivial HTTP program, same machine, same run.

Prints medians and ratios: SIGKILL → answering HTTP again, CLI ``status`` wall time, control-socket
round trip, daemon RSS, and the time for 200 units to become healthy (llm-supervisord).

    .venv/bin/python bench/bench_supervisor.py [--runs 10] [--units 200]

supervisord and circus come from the ``bench`` extra (``pip install -e '.[bench]'``); a missing
one is reported and left out. Each supervisor is configured to restart at once (supervisord
``autorestart=true startsecs=0``, circus defaults, ours ``RestartSec=0``).
"""

from __future__ import annotations

import argparse
import os
import shutil
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
import psutil

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


def bench_ours_many(count: int) -> dict[str, float]:
    """``count`` units, each a light HTTP server with a TCP check: start → all healthy."""
    busybox = shutil.which("busybox")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        units = work / "units"
        units.mkdir()
        (units / "stack.target").write_text("[Unit]\n")
        www = work / "www"
        www.mkdir()
        ports: set[int] = set()
        while len(ports) < count:  # free_port() can hand out the same port twice in 200 calls
            ports.add(free_port())
        for index, port in enumerate(sorted(ports)):
            command = (f"{busybox} httpd -f -p 127.0.0.1:{port} -h {www}" if busybox else
                       f"{sys.executable} -m http.server {port} --bind 127.0.0.1")
            write_unit(units, f"u{index:03d}", command, f"tcp://127.0.0.1:{port}")
        started = time.perf_counter()
        proc, env = start_ours(work)
        from llm_supervisor.cli.client import ControlClient

        client = ControlClient(work / "state" / "supervisor.sock")
        try:
            elapsed = wait_until(lambda: sum(u["health"] == "healthy" for u in client.get("/units"))
                                 == count, 120, poll=0.1)
            elapsed = time.perf_counter() - started
            return {"healthy": elapsed, "rss": rss_mb(proc.pid),
                    "program": "busybox httpd" if busybox else "python http.server"}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--units", type=int, default=200)
    args = parser.parse_args()
    results = {"llm-supervisord": bench_ours(args.runs), "supervisord": bench_supervisord(args.runs),
               "circus": bench_circus(args.runs)}
    many = bench_ours_many(args.units)
    base = results["supervisord"]
    print(f"\n{'':18}{'restart→HTTP':>14}{'ctl status':>12}{'socket p50':>12}{'daemon RSS':>12}")
    for name, result in results.items():
        if result is None:
            print(f"{name:18}  not installed (pip install -e '.[bench]')")
            continue
        print(f"{name:18}{result['restart']:>13.3f}s{result['status']:>11.3f}s"
              f"{result['rtt'] * 1000:>10.2f}ms{result['rss']:>10.1f}MB")
    ours = results["llm-supervisord"]
    if base:
        print(f"\nratios llm-supervisord / supervisord: restart {ours['restart'] / base['restart']:.2f}×"
              f" (target ≤ 0.7×), status {ours['status'] / base['status']:.2f}×,"
              f" socket round trip {ours['rtt'] / base['rtt']:.2f}×")
    print(f"targets: socket p50 {ours['rtt'] * 1000:.2f} ms (≤ 5 ms), RSS {ours['rss']:.1f} MB (≤ 60 MB)")
    print(f"{args.units} units ({many['program']}) healthy in {many['healthy']:.2f} s (target ≤ 10 s);"
          f" daemon RSS then {many['rss']:.1f} MB")


if __name__ == "__main__":
    main()
