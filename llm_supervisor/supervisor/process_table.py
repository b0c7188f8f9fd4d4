"""One look at every process on the machine: parent, CPU seconds, resident memory, start time.

``status`` of a thousand units needs the process tree of each; asking psutil per process costs
three ``/proc`` reads and an object each, and building the parent map a scan of its own. On Linux
one read of ``/proc/PID/stat`` gives all of it, so a round of sampling is one pass over ``/proc``,
shared by every unit (:class:`~.resources.ProcessTreeSampler` keeps it for a short while). Where
the kernel lists each task's children (``/proc/PID/task/TID/children``) only the units' own trees
are read, not every process on the machine. Elsewhere psutil answers the same questions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

_PROC = "/proc"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessEntry:
    ppid: int
    cpu_seconds: float  # user + system
    rss: int  # bytes
    started: float  # seconds since the epoch (as psutil's create_time)


@dataclass(frozen=True)
class ProcessTable:
    entries: dict[int, ProcessEntry]
    children: dict[int, list[int]]
    at: float  # time.monotonic() of the look


def _parse_stat(text: str, boot_time: float) -> ProcessEntry:
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return ProcessEntry(ppid=int(fields[1]),
                        cpu_seconds=(int(fields[11]) + int(fields[12])) / _TICKS,
                        rss=int(fields[21]) * _PAGE,
                        started=boot_time + int(fields[19]) / _TICKS)


def _linux_table() -> dict[int, ProcessEntry]:
    boot_time = psutil.boot_time()
    entries: dict[int, ProcessEntry] = {}
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        try:
            with open(f"{_PROC}/{name}/stat", encoding="ascii", errors="replace") as file:
                entries[int(name)] = _parse_stat(file.read(), boot_time)
        except (OSError, ValueError, IndexError):  # ended while we looked
            continue
    return entries


def _psutil_table() -> dict[int, ProcessEntry]:
    entries: dict[int, ProcessEntry] = {}
    for process in psutil.process_iter(["ppid", "cpu_times", "memory_info", "create_time"]):
        info = process.info
        if info.get("cpu_times") is None or info.get("memory_info") is None:
            continue
        times = info["cpu_times"]
        entries[process.pid] = ProcessEntry(info.get("ppid") or 0, times.user + times.system,
                                            info["memory_info"].rss, info["create_time"] or 0.0)
    return entries


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, from each of its threads' ``children`` file."""
    found: list[int] = []
    for tid in os.listdir(f"{_PROC}/{pid}/task"):
        with open(f"{_PROC}/{pid}/task/{tid}/children", encoding="ascii") as file:
            found.extend(int(child) for child in file.read().split())
    return found


def _linux_trees(roots: list[int]) -> ProcessTable:
    """Only the trees under ``roots``: two or three small reads per process of ours, however
    many other processes the machine runs."""
    boot_time = psutil.boot_time()
    entries: dict[int, ProcessEntry] = {}
    children: dict[int, list[int]] = {}
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in entries:
            continue
        try:
            with open(f"{_PROC}/{pid}/stat", encoding="ascii", errors="replace") as file:
                entries[pid] = _parse_stat(file.read(), boot_time)
            kids = _children_of(pid)
        except (OSError, ValueError, IndexError):  # ended while we looked
            entries.pop(pid, None)
            continue
        if kids:
            children[pid] = kids
            stack.extend(kids)
    return ProcessTable(entries, children, time.monotonic())


def _can_walk_trees() -> bool:
    """``/proc/PID/task/TID/children`` exists (Linux with CONFIG_PROC_CHILDREN, the usual)."""
    pid = os.getpid()
    return os.path.exists(f"{_PROC}/{pid}/task/{pid}/children")


WALK_TREES = _can_walk_trees()


def read_table(roots: list[int] | None = None) -> ProcessTable:
    """The whole table, or (``roots`` given, where the kernel allows) only their trees."""
    if roots is not None and WALK_TREES:
        return _linux_trees(roots)
    entries = _linux_table() if os.path.isdir(f"{_PROC}/self") else _psutil_table()
    children: dict[int, list[int]] = {}
    for pid, entry in entries.items():
        if entry.ppid:
            children.setdefault(entry.ppid, []).append(pid)
    return ProcessTable(entries, children, time.monotonic())
