"""The shipped stack's programs under llm-supervisord, then the very same programs under
supervisord: each supervisor's own RSS and its ``…ctl status`` wall time.

Ours runs the shipped unit files (process runtime, the offline GGUF, free ports, an empty config
file). Once every unit that is not skipped is healthy, the daemon's children are the programs:
their argv, working directory, environment and user are taken from /proc and handed to
supervisord, one ``[program:x]`` each (a tiny ``sh`` wrapper ``exec``s ``env -i ... argv`` so
the environment is exact and the program is supervisord's own child). supervisord is set up as
its docs recommend for such programs: ``autorestart=true``, ``stopasgroup``/``killasgroup`` for
programs with children, its default log handling.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STACK_ENV_PREFIXES = ("LLM_SUPERVISOR_", "MODEL_", "HF_", "GATEWAY_", "DASHBOARD_", "NOVNC_",
                      "VNC_")


@dataclass
class Program:
    name: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    user: str


@dataclass
class StackResult:
    supervisor: str
    rss_mb: float
    status_s: float
    programs: list[str]
    running: list[str] = field(default_factory=list)
    note: str = ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def median_wall(argv: list[str], env: dict[str, str] | None, runs: int) -> float:
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False, timeout=60)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def settled_rss_mb(pid: int, settle_s: float = 3.0) -> float:
    time.sleep(settle_s)  # a fixed quiet period on purpose: RSS after start-up work is done
    return psutil.Process(pid).memory_info().rss / 1e6


def stack_env(work: Path) -> dict[str, str]:
    config = work / "empty-config.toml"
    config.write_text("")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(STACK_ENV_PREFIXES)}
    return {**inherited, "LLM_SUPERVISOR_CONFIG": str(config),
            "LLM_SUPERVISOR_STATE_DIR": str(work / "state"),
            "LLM_SUPERVISOR_UNITS_DIR": str(work / "units"), "LLM_SUPERVISOR_RUNTIME": "process",
            "HF_HUB_OFFLINE": "1", "GATEWAY_PORT": str(free_port()),
            "GATEWAY_ADMIN_PORT": str(free_port()), "MODEL_SERVICE_PORT": str(free_port()),
            "DASHBOARD_PORT": str(free_port()), "NOVNC_PORT": str(free_port()),
            "VNC_PORT": str(free_port())}


def ours(work: Path, status_runs: int, timeout: float = 300) -> tuple[StackResult, list[Program]]:
    """The shipped stack under llm-supervisord, run with ``-X importtime``: its stderr stays in
    ``work/daemon.stderr`` for the import profile."""
    from llm_supervisor.cli.client import ControlClient, DaemonNotRunning

    units = work / "units"
    shutil.copytree(ROOT / "units", units, symlinks=False)
    env = stack_env(work)
    stderr_path = work / "daemon.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m",
                                 "llm_supervisor.cli.daemon_cli", "start", "--foreground"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                stdin=subprocess.DEVNULL, cwd=work)
    client = ControlClient(work / "state" / "supervisor.sock", timeout=60)
    try:
        deadline = time.monotonic() + timeout
        listing: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: "
                                   f"{stderr_path.read_text(errors='replace')[-2000:]}")
            try:
                listing = client.get("/units")
            except (DaemonNotRunning, OSError):
                listing = []
            if listing and all(_settled(u) for u in listing):
                break
            time.sleep(0.5)
        active = [u for u in listing if u["state"] not in ("skipped", "inactive")]
        unhealthy = [f"{u['name']}={u['state']}/{u['health']}" for u in active
                     if u["health"] not in ("healthy", None)]
        rss = settled_rss_mb(proc.pid)
        programs = [_program(child) for child in psutil.Process(proc.pid).children()]
        status = median_wall([str(BIN / "llm-supervisorctl"), "status"], env, status_runs)
        names = [p.name for p in programs]
        return StackResult("llm-supervisord", rss, status, names, names,
                           note=f"not healthy: {', '.join(unhealthy)}" if unhealthy else ""
                           ), programs
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()


def _settled(unit: dict[str, Any]) -> bool:
    return unit["state"] in ("skipped", "failed", "inactive") or unit["health"] == "healthy" or (
        unit["state"] == "running" and unit["health"] in (None, "none"))


def _program(proc: psutil.Process) -> Program:
    argv = proc.cmdline()
    user = pwd.getpwuid(proc.uids().real).pw_name
    name = Path(argv[0]).name
    if name.startswith("python") and "-m" in argv:
        name = argv[argv.index("-m") + 1].replace(".", "-")
    return Program(name, argv, proc.cwd(), proc.environ(), user)


def supervisord(work: Path, programs: list[Program], status_runs: int,
                timeout: float = 60) -> StackResult | None:
    """The same programs under supervisord 4.x (from the ``bench`` extra)."""
    if not (BIN / "supervisord").exists():
        return None
    sections = []
    seen: dict[str, int] = {}
    for index, program in enumerate(programs):
        seen[program.name] = seen.get(program.name, 0) + 1
        name = program.name if seen[program.name] == 1 else f"{program.name}-{seen[program.name]}"
        wrapper = work / f"program-{index}.sh"
        env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(program.env.items()))
        wrapper.write_text(f"#!/bin/sh\ncd {shlex.quote(program.cwd)} && exec env -i {env_args} "
                           f"{shlex.join(program.argv)}\n")
        user = f"user={program.user}\n" if program.user != "root" else ""
        sections.append(f"[program:{name}]\ncommand=/bin/sh {wrapper}\nautorestart=true\n"
                        f"stopasgroup=true\nkillasgroup=true\n{user}")
    conf = work / "supervisord.conf"
    conf.write_text(f"""[unix_http_server]
file={work}/supervisor.sock
[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
childlogdir={work}
nodaemon=true
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{work}/supervisor.sock
""" + "\n".join(sections))
    proc = subprocess.Popen([str(BIN / "supervisord"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctl = [str(BIN / "supervisorctl"), "-c", str(conf), "status"]
    try:
        deadline = time.monotonic() + timeout
        running: list[str] = []
        while time.monotonic() < deadline:
            out = subprocess.run(ctl, capture_output=True, text=True, timeout=30).stdout
            running = [line.split()[0] for line in out.splitlines() if " RUNNING " in line]
            if len(running) == len(programs):
                break
            time.sleep(0.5)
        rss = settled_rss_mb(proc.pid)
        out = subprocess.run(ctl, capture_output=True, text=True, timeout=30).stdout
        running = [line.split()[0] for line in out.splitlines() if " RUNNING " in line]
        status = median_wall(ctl, None, status_runs)
        others = ["/".join(line.split()[:2]) for line in out.splitlines()
                  if line.strip() and " RUNNING " not in line]
        return StackResult("supervisord", rss, status, [p.name for p in programs], running,
                           note=f"not RUNNING: {', '.join(others)}" if others else "")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
