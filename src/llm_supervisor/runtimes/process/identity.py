"""Is this process one we started? The proof a restarted daemon needs before it signals anything.

A saved pid or process-group id alone proves nothing after a reboot or once the kernel reuses the
number. A process from a record is ours only when all of these hold:

- the record was written during this boot (``/proc/sys/kernel/random/boot_id``);
- it carries our markers in its environment (``LLM_SUPERVISOR_UNIT=<unit>`` and
  ``LLM_SUPERVISOR_OWNER=<state dir>``, set for every unit program and inherited by its children);
- the group leader, if still there, has the exact start time recorded (clock ticks since boot,
  ``/proc/PID/stat`` field 22), and no other member is older than the leader.

A process that dropped its environment (``env -i``) is not recognised; leaving it running is the
price of never killing a stranger.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import psutil

UNIT_MARKER = "LLM_SUPERVISOR_UNIT"
OWNER_MARKER = "LLM_SUPERVISOR_OWNER"
MARKERS = (UNIT_MARKER, OWNER_MARKER)

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot: exact, unlike a float create_time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..." - comm may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def markers_from(env: Mapping[str, str]) -> dict[str, str]:
    return {name: env[name] for name in MARKERS if name in env}


def carries_markers(proc: psutil.Process, markers: Mapping[str, str]) -> bool:
    """True when the process's environment holds every marker with the recorded value. A
    process we may not inspect (another user's, without root) is not ours."""
    try:
        environ = proc.environ()
    except (psutil.Error, OSError):
        return False
    return all(environ.get(name) == value for name, value in markers.items())


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def verified_members(pgid: int, leader_pid: int, leader_ticks: int,
                     markers: Mapping[str, str]) -> tuple[list[psutil.Process], list[str]]:
    """Members of group ``pgid`` that are provably ours, and why each other member is not."""
    ours: list[psutil.Process] = []
    strangers: list[str] = []
    for proc in group_members(pgid):
        ticks = start_ticks(proc.pid)
        if ticks is None:
            continue  # gone meanwhile
        if proc.pid == leader_pid and ticks != leader_ticks:
            strangers.append(f"pid {proc.pid}: start time differs from the record (pid reused)")
        elif ticks < leader_ticks:
            strangers.append(f"pid {proc.pid}: older than the recorded leader")
        elif not carries_markers(proc, markers):
            strangers.append(f"pid {proc.pid}: no {UNIT_MARKER}/{OWNER_MARKER} marker of ours")
        else:
            ours.append(proc)
    return ours, strangers
