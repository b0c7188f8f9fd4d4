"""``llm-supervisorctl doctor``: can the stack run here? What run.sh checked, and more.

Each check says OK, WARN (the stack runs, something is missing or tight) or FAIL (it cannot
run as configured), and every problem comes with its fix. Exit 0 when nothing FAILs.
Needs no running daemon; when one answers, ports its own units hold are not problems.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import psutil

from llm_supervisor.cli.doctor_check import Check
from llm_supervisor.cli.doctor_gateway import check_gateway
from llm_supervisor.heal import ports as heal_ports

GIB = 1024**3
MODEL_MEMORY = 4 * GIB  # what the runbook asks for the (TinyLlama) model
MIN_MEMORY = 1 * GIB  # below this even the offline GGUF model will not serve
DISK_WANTED = 5 * GIB
DISK_MINIMUM = 1 * GIB
MODEL_SUFFIXES = (".gguf", ".safetensors", ".bin")




def _size(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):  # noqa: UP036 - a venv of an older Python reaches this line
        return Check("python", "fail", f"Python {version}",
                     "install Python 3.11 or newer and recreate the venv (make setup)")
    return Check("python", "ok", f"Python {version} ({sys.executable})")


def check_memory(available: int | None = None) -> Check:
    memory = psutil.virtual_memory()
    available = memory.available if available is None else available
    detail = f"{_size(available)} available of {_size(memory.total)}"
    if available < MIN_MEMORY:
        return Check("memory", "fail", detail,
                     "free memory (close programs) — the model service needs at least 1 GiB")
    if available < MODEL_MEMORY:
        return Check("memory", "warn", detail + " (the runbook asks 4 GB for the model)",
                     "the offline SmolLM2 GGUF (ENGINE=auto, no MODEL_ID download) needs ~0.5 GB; "
                     "TinyLlama from the hub needs ~4 GB: free memory before using it")
    return Check("memory", "ok", detail)


def check_disk(path: Path) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{_size(free)} free at {probe}"
    if free < DISK_MINIMUM:
        return Check("disk", "fail", detail, f"free space on the filesystem of {path}, or set "
                     "LLM_SUPERVISOR_STATE_DIR / MODEL_PATH elsewhere")
    if free < DISK_WANTED:
        return Check("disk", "warn", detail + " (a hub model and its conversion need ~5 GiB)",
                     f"free space on the filesystem of {path}")
    return Check("disk", "ok", detail)


def check_units(settings: Any, result: Any) -> list[Check]:
    """Every unit's programs: its conditions (unmet = the unit is skipped) and its ExecStart."""
    checks = [Check(f"unit file {error.path}", "fail", str(error),
                    "fix the file (llm-supervisorctl verify shows every problem)")
              for error in result.errors]
    for unit in sorted(result.units.values(), key=lambda u: u.name):
        if not unit.is_service or "@" in unit.name:
            continue
        missing = []
        for condition in unit.conditions:
            if condition.negate or condition.kind == "runtime":
                continue
            if not condition.present_on_host():
                missing.append(condition.value)
        hint = unit.install_hint or "install it, or remove the unit file"
        if missing:
            checks.append(Check(f"unit {unit.short_name}", "warn",
                                f"missing {', '.join(missing)}: the unit will be skipped", hint))
            continue
        runtime = unit.runtime or settings.default_runtime
        argv0 = unit.exec_start[0] if unit.exec_start else None
        if argv0 and runtime != "docker" and "$" not in argv0 and shutil.which(argv0) is None:
            checks.append(Check(f"unit {unit.short_name}", "fail",
                                f"ExecStart program {argv0} not found", hint))
            continue
        checks.append(Check(f"unit {unit.short_name}", "ok", "programs found"
                            + (f" ({argv0})" if argv0 else "")))
    return checks


def check_docker(settings: Any, units_want_docker: bool) -> Check | None:
    if settings.default_runtime != "docker" and not units_want_docker:
        return None
    from llm_supervisor.runtimes.docker.runtime import engine_available

    if engine_available(timeout=3.0):
        return Check("docker", "ok", "a Docker engine answers")
    return Check("docker", "fail", "the docker runtime is asked for but no Docker engine answers",
                 "start it (sudo systemctl start docker, or: sudo dockerd &), or set "
                 "LLM_SUPERVISOR_RUNTIME=process")


def _port_owner(port: int) -> str:
    """pid, command and user of the holder ("another llm-supervisord" when it is ours)."""
    found = heal_ports.holder(port)
    return found.who() if found else "another program"


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now; False when something holds it. A port this
    user may not bind (below 1024 without root) raises PermissionError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def check_ports(settings: Any, ours: set[int]) -> list[Check]:
    wanted = {
        "GATEWAY_PORT": settings.gateway_port,
        "MODEL_SERVICE_PORT": settings.model_service_port,
        "NOVNC_PORT": settings.novnc_port,
        "VNC_PORT": settings.vnc_port,
    }
    if settings.dashboard_port:
        wanted["DASHBOARD_PORT"] = settings.dashboard_port
    if settings.resolved_gateway_program == "traefik":
        wanted["GATEWAY_ADMIN_PORT"] = settings.gateway_admin_port
    checks = []
    for name, port in wanted.items():
        host = "127.0.0.1" if name in ("MODEL_SERVICE_PORT", "VNC_PORT") else \
            settings.dashboard_bind_address if name == "DASHBOARD_PORT" else settings.bind_address
        try:
            free = port_free(host, port)
        except PermissionError:
            checks.append(Check(f"port {port}", "fail", f"{name}: this user may not bind "
                                f"{host}:{port} (ports below 1024 need root)",
                                f"run as root, or set {name} to a port above 1023 "
                                f"(e.g. {name}=8000)"))
            continue
        except OSError as exc:
            checks.append(Check(f"port {port}", "fail", f"{name}: cannot bind {host}:{port} "
                                f"({exc.strerror})", f"set {name} to another port"))
            continue
        if free:
            checks.append(Check(f"port {port}", "ok", f"{name} free on {host}"))
        elif port in ours:
            checks.append(Check(f"port {port}", "ok", f"{name} in use by the running stack"))
        elif name in heal_ports.INTERNAL:  # only the stack uses it: the heal plugin moves it
            checks.append(Check(f"port {port}", "warn",
                                f"{name} {host}:{port} is taken by {_port_owner(port)}",
                                "the stack moves it to a free port at start (status says "
                                f"which); set {name}=<free port> to choose one yourself"))
        else:
            checks.append(Check(f"port {port}", "fail",
                                f"{name} {host}:{port} is taken by {_port_owner(port)}",
                                f"stop that program, or set {name}=<free port> (environment or "
                                "the config file)"))
    return checks


def check_model_dir(settings: Any) -> Check:
    from llm_supervisor.model_server.weights.manifest import MANIFEST_NAME

    path = settings.effective_model_path
    if not path.exists():
        return Check("model", "ok", f"{path} does not exist yet: the model service fills it on "
                     "its first start (offline: the bundled SmolLM2 GGUF, ~100 MB)")
    if not path.is_dir():
        return Check("model", "fail", f"MODEL_PATH {path} is not a directory",
                     "point MODEL_PATH at a directory (or remove the file)")
    files = [p for p in path.iterdir() if p.is_file()]
    weights = [p for p in files if p.suffix in MODEL_SUFFIXES]
    if not files:
        return Check("model", "ok", f"{path} is empty: filled on the first start")
    if not weights:
        return Check("model", "warn", f"{path} holds files but no weights (*.gguf, "
                     "*.safetensors, *.bin)", "llm-supervisorctl repair model-service, or "
                     "empty the directory to fetch the model again")
    manifest = path / MANIFEST_NAME
    if not os.access(path, os.W_OK):
        return Check("model", "warn", f"{path} is not writable by this user",
                     "repairs need to write there: fix its owner or permissions")
    size = sum(p.stat().st_size for p in weights)
    state = "with manifest" if manifest.exists() else "without manifest (checked only on load)"
    return Check("model", "ok", f"{len(weights)} weight file(s), {_size(size)}, {state} "
                 f"in {path}")


def _our_ports(settings: Any) -> tuple[set[int], bool]:
    """Ports held by the running daemon's unit processes, and whether any unit wants docker."""
    from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning

    try:
        units = ControlClient(settings.socket, timeout=5).get("/units")
    except (DaemonNotRunning, ControlError):
        return set(), False
    pids: set[int] = set()
    for unit in units:
        if unit.get("pid"):
            pids.add(unit["pid"])
            with contextlib.suppress(psutil.Error):
                pids.update(c.pid for c in psutil.Process(unit["pid"]).children(recursive=True))
    ports = set()
    try:
        for connection in psutil.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN and connection.pid in pids:
                ports.add(connection.laddr.port)
    except (psutil.AccessDenied, OSError):
        pass
    ports.add(settings.dashboard_port)  # served by the daemon itself
    return ports, any(u.get("runtime") == "docker" for u in units)


def run_checks(settings: Any) -> list[Check]:
    ours, docker_running = _our_ports(settings)
    from llm_supervisor.units.loader import load_directory

    checks = [check_python(), check_memory(), check_disk(settings.state_dir)]
    if not settings.effective_model_path.is_relative_to(settings.state_dir):
        checks.append(check_disk(settings.effective_model_path))
    loaded = load_directory(settings.units_dir, settings.expansion_vars())
    checks.extend(check_units(settings, loaded))
    wants_docker = docker_running or any(u.runtime == "docker" for u in loaded.units.values())
    docker = check_docker(settings, wants_docker)
    if docker is not None:
        checks.append(docker)
    checks.extend(check_ports(settings, ours))
    checks.append(check_model_dir(settings))
    checks.extend(check_gateway(settings))
    return checks


def report(checks: list[Check]) -> int:
    from rich.markup import escape

    from llm_supervisor.cli.render import make_console

    console = make_console()
    styles = {"ok": "[green]OK  [/]", "warn": "[yellow]WARN[/]", "fail": "[bold red]FAIL[/]"}
    for check in checks:
        console.print(f"{styles[check.level]} {escape(check.name)}: {escape(check.detail)}")
        if check.fix and check.level != "ok":
            console.print(f"     fix: {escape(check.fix)}")
    failed = sum(c.level == "fail" for c in checks)
    warned = sum(c.level == "warn" for c in checks)
    console.print(f"{len(checks)} checks: {failed} problem(s), {warned} warning(s) — "
                  + ("the stack cannot run as configured" if failed else "the stack can run"))
    return 1 if failed else 0
