"""A taken port: who holds it, and for ports only the stack uses inside, a free one instead.

Internal ports (``INTERNAL``: the model service behind the gateway, x11vnc's VNC port behind
websockify) move: the unit gets a free port through its environment, and its health check and
``[Route]`` upstream follow, so the gateway is rewired by its usual re-render. User-facing ports
(``USER_FACING``) never move behind the user's back: the unit fails with the holder and the
setting to change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from llm_supervisor.heal.evidence import first_match, last_run

KIND = "port_in_use"
INTERNAL = ("MODEL_SERVICE_PORT", "VNC_PORT")
USER_FACING = ("GATEWAY_PORT", "DASHBOARD_PORT", "NOVNC_PORT", "GATEWAY_ADMIN_PORT")
OWNER_MARKER = "LLM_SUPERVISOR_OWNER"  # runtimes.process.identity: set in every unit's env
PATTERNS = [re.compile(p, re.IGNORECASE) for p in (
    r"address already in use", r"\[Errno 98\]", r"EADDRINUSE", r"bind.*Address in use",
    r"cannot bind to local", r"listen tcp .*: bind:")]


def evidence(log_tail: Sequence[str]) -> str | None:
    return first_match(last_run(log_tail), PATTERNS)


@dataclass(frozen=True)
class Holder:
    port: int
    pid: int | None
    command: str
    user: str
    ours: bool  # another llm-supervisord (or one of its units) holds it

    def who(self) -> str:
        """``pid 42 (python3 -m http.server), user alice``; ours say "another llm-supervisord"."""
        if self.pid is None:
            return "a process we may not see (run `llm-supervisorctl doctor` as root to name it)"
        who = f"pid {self.pid} ({self.command}), user {self.user}"
        return f"another llm-supervisord: {who}" if self.ours else who

    def describe(self) -> str:
        return f"port {self.port} is held by {self.who()}"


def _is_ours(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        if any("llm-supervisord" in part or "llm_supervisor" in part for part in proc.cmdline()):
            return True
        return OWNER_MARKER in proc.environ()
    return False


def holder(port: int) -> Holder | None:
    """Who listens on TCP ``port`` (any address), or None when it is free."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.Error:
        connections = []
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.pid is None:
            return Holder(port, None, "?", "?", False)
        try:
            proc = psutil.Process(conn.pid)
            command = " ".join(proc.cmdline())[:120] or proc.name()
            user = proc.username()
        except psutil.Error:
            command, user = "?", "?"
            proc = None
        return Holder(port, conn.pid, command, user, proc is not None and _is_ours(proc))
    return None if _bindable(port) else Holder(port, None, "?", "?", False)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _numbers_used(unit: Any) -> set[str]:
    """Port numbers the unit itself names: its Environment=, command line, health check."""
    text = " ".join([*(unit.exec_start or []), *unit.environment.values(),
                     unit.health.target if unit.health is not None else ""])
    return set(re.findall(r"\d+", text))


def port_keys(env: Mapping[str, str], unit: Any) -> list[tuple[str, int]]:
    """The ``*_PORT`` variables the unit uses (every unit gets the whole config's; only those
    its own settings name count), internal ones first."""
    used = _numbers_used(unit)
    found = [(key, int(value)) for key, value in env.items()
             if key.endswith("_PORT") and value.isdigit() and value in used]
    return sorted(found, key=lambda kv: (kv[0] not in INTERNAL, kv[0]))


def taken(env: Mapping[str, str], unit: Any) -> tuple[str, int, Holder] | None:
    """The first of the unit's ports (its variables, its health check) someone else holds."""
    candidates = port_keys(env, unit)
    health = getattr(unit, "health", None)
    if health is not None:
        match = re.search(r":(\d+)(?:/|$)", health.target)
        if match and all(port != int(match.group(1)) for _, port in candidates):
            candidates.append(("", int(match.group(1))))
    for key, port in candidates:
        found = holder(port)
        if found is not None:
            return key, port, found
    return None


def rewire(unit: Any, old: int, new: int) -> None:
    """The unit's health check, ``[Route]`` upstream and command line follow the moved port."""
    pattern = re.compile(rf":{old}(?=/|$)")
    if unit.health is not None:
        unit.health = dataclasses.replace(unit.health, target=pattern.sub(f":{new}", unit.health.target))
    if unit.route is not None and unit.route.upstream:
        unit.route = dataclasses.replace(unit.route,
                                         upstream=pattern.sub(f":{new}", unit.route.upstream))
    if unit.exec_start:
        unit.exec_start = [pattern.sub(f":{new}", arg) if arg != str(old) else str(new)
                           for arg in unit.exec_start]


def rewire_dependents(units: list[Any], moved: Any, old: int, new: int) -> list[Any]:
    """Other units whose command line points at ``127.0.0.1:OLD`` (websockify at x11vnc's
    port): their argument follows the move. Returns the units changed (to be restarted)."""
    pattern = re.compile(rf"^((?:127\.0\.0\.1|localhost|\[::1\]):){old}$")
    changed = []
    for unit in units:
        if unit is moved or not unit.exec_start:
            continue
        argv = [pattern.sub(rf"\g<1>{new}", arg) for arg in unit.exec_start]
        if argv != unit.exec_start:
            unit.exec_start = argv
            changed.append(unit)
    return changed
