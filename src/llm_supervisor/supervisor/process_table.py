"""One look at every process on the machine: parent, CPU seconds, resident memory, start time.

``status`` of a thousand units needs the process tree of each; asking psutil per process costs
three ``/proc`` reads and an object each, and building the parent map a scan of its own. On Linux
one read of ``/proc/PID/stat`` gives all of it, so a round of sampling is one pass over ``/proc``,
shared by every unit (:class:`~.resources.ProcessTreeSampler` keeps it for a short while).
Elsewhere psutil answers the same questions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import NamedTuple

import psutil

_PROC = "/proc"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcessEntry(NamedTuple):  # a tuple: a thousand are made per look
    ppid: int
    cpu_seconds: float  # user + system
    rss: int  # bytes
    started: float  # seconds since the epoch (as psutil's create_time)


@dataclass(frozen=True)
class ProcessTable:
    entries: dict[int, ProcessEntry]
    children: dict[int, list[int]]
    at: float  # time.monotonic() of the look


def _parse_stat(text: bytes, boot_time: float) -> ProcessEntry:
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    fields = text[text.rindex(b")") + 2:].split()
    return ProcessEntry(int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS,
                        int(fields[21]) * _PAGE, boot_time + int(fields[19]) / _TICKS)


def _linux_table() -> dict[int, ProcessEntry]:
    boot_time = psutil.boot_time()
    entries: dict[int, ProcessEntry] = {}
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        try:  # os.open/os.read: no file object and no decoding per process
            fd = os.open(f"{_PROC}/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
            try:
                text = os.read(fd, 4096)
            finally:
                os.close(fd)
            entries[int(name)] = _parse_stat(text, boot_time)
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


def read_table() -> ProcessTable:
    entries = _linux_table() if os.path.isdir(f"{_PROC}/self") else _psutil_table()
    children: dict[int, list[int]] = {}
    for pid, entry in entries.items():
        if entry.ppid:
            children.setdefault(entry.ppid, []).append(pid)
    return ProcessTable(entries, children, time.monotonic())
