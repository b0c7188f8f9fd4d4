"""CPU and resident memory of each unit: its whole process tree, or its container.

``status``, ``status --json``, ``/metrics`` and the dashboard read them from one
:class:`ResourceSampler` kept by the manager. CPU % is a rate, so the sampler keeps what it saw
last (a ``psutil.Process`` per pid, the container's last CPU counters) and answers the use
*between two looks*. The first look at a process uses its lifetime average, as ``ps`` does, so
even the first ``status`` says something true.

Containers are measured through the engine's stats API (``one_shot``, not streamed), in a
thread: a slow engine never holds the event loop, and the answer is the last one it gave
(at most :data:`CONTAINER_REFRESH_S` old).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

CONTAINER_REFRESH_S = 2.0
CHILDREN_MAP_S = 0.5


@dataclass
class _Seen:
    """What one process had used when we last looked at it."""

    process: psutil.Process
    cpu_seconds: float
    at: float


@dataclass
class Usage:
    cpu_percent: float | None = None
    memory_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        cpu = None if self.cpu_percent is None else round(self.cpu_percent, 1)
        return {"cpu_percent": cpu, "memory_bytes": self.memory_bytes}


NOT_RUNNING = Usage()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class ProcessTreeSampler:
    """CPU % (100 = one core) and RSS summed over a root process and all its descendants.

    Who is whose child comes from one scan of the process table, reused for
    :data:`CHILDREN_MAP_S`: ``status`` of 200 units would otherwise scan it 200 times."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, float], _Seen] = {}
        self._children: dict[int, list[int]] = {}
        self._children_at = -1.0
        self._processes: dict[int, psutil.Process] = {}

    def _children_map(self) -> dict[int, list[int]]:
        now = time.monotonic()
        if now - self._children_at > CHILDREN_MAP_S:
            children: dict[int, list[int]] = {}
            for process in psutil.process_iter(["ppid"]):
                ppid = process.info.get("ppid")
                if ppid:
                    children.setdefault(ppid, []).append(process.pid)
            self._children, self._children_at = children, now
        return self._children

    def _tree(self, pid: int) -> list[psutil.Process]:
        if not psutil.pid_exists(pid):
            raise psutil.NoSuchProcess(pid)
        children = self._children_map()
        pids, stack = [], [pid]
        while stack:
            current = stack.pop()
            pids.append(current)
            stack.extend(children.get(current, ()))
        tree = []
        for member in pids:
            cached = self._process(member)
            if cached is not None:
                tree.append(cached)
        if not tree:
            raise psutil.NoSuchProcess(pid)
        return tree

    def _process(self, pid: int) -> psutil.Process | None:
        """The Process object kept from earlier looks (psutil keeps its create time), or a new
        one when the pid is new or was reused."""
        process = self._processes.get(pid)
        if process is not None and process.is_running():
            return process
        try:
            process = psutil.Process(pid)
        except psutil.Error:
            self._processes.pop(pid, None)
            return None
        self._processes[pid] = process
        return process

    def sample(self, pid: int) -> Usage:
        try:
            tree = self._tree(pid)
        except psutil.Error:
            return NOT_RUNNING
        now = time.monotonic()
        wall_now = time.time()
        cpu = 0.0
        rss = 0
        for process in tree:
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    used = _cpu_seconds(process)
                    rss += process.memory_info().rss
            except psutil.Error:  # ended while we looked: it no longer uses anything
                continue
            seen = self._seen.get(key)
            if seen is not None and now > seen.at:
                cpu += max(0.0, used - seen.cpu_seconds) / (now - seen.at) * 100
            else:
                age = wall_now - key[1]
                cpu += used / age * 100 if age > 0 else 0.0
            self._seen[key] = _Seen(process, used, now)
        return Usage(cpu, rss)

    def forget_dead(self) -> None:
        """Drop processes that have ended (called now and then, so the table does not grow)."""
        for key, seen in list(self._seen.items()):
            if not seen.process.is_running():
                del self._seen[key]
        for pid, process in list(self._processes.items()):
            if not process.is_running():
                del self._processes[pid]


def container_usage(container: Any, previous: dict[str, Any] | None) -> tuple[Usage, dict]:
    """One non-streamed stats call for ``container`` (a docker-py Container). CPU % is computed
    against ``previous`` counters (the engine's ``one_shot`` answer has no pre-sample); memory
    excludes the page cache, as ``docker stats`` does. Returns the usage and the new counters."""
    stats = container.stats(stream=False, one_shot=True)
    cpu_stats = stats.get("cpu_stats") or {}
    counters = {
        "total": (cpu_stats.get("cpu_usage") or {}).get("total_usage") or 0,
        "system": cpu_stats.get("system_cpu_usage") or 0,
        "cpus": cpu_stats.get("online_cpus") or len(
            (cpu_stats.get("cpu_usage") or {}).get("percpu_usage") or []) or 1,
    }
    cpu = 0.0
    if previous is not None:
        system_delta = counters["system"] - previous["system"]
        total_delta = counters["total"] - previous["total"]
        if system_delta > 0 and total_delta >= 0:
            cpu = total_delta / system_delta * counters["cpus"] * 100
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    usage = memory.get("usage")
    return Usage(cpu, max(0, int(usage) - int(cache or 0)) if usage is not None else None), counters


class ContainerSampler:
    """The last stats of each container, refreshed in a background thread when older than
    :data:`CONTAINER_REFRESH_S`."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, Usage, dict[str, Any] | None]] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def _refresh(self, container: Any) -> None:
        key = container.id
        try:
            with self._lock:
                previous = self._last.get(key, (0.0, NOT_RUNNING, None))[2]
            usage, counters = container_usage(container, previous)
            with self._lock:
                self._last[key] = (time.monotonic(), usage, counters)
        except Exception:  # engine gone, container removed: the unit's state says why
            with self._lock:
                self._last.pop(key, None)
        finally:
            with self._lock:
                self._busy.discard(key)

    def sample(self, container: Any) -> Usage:
        key = container.id
        with self._lock:
            at, usage, _ = self._last.get(key, (0.0, NOT_RUNNING, None))
            stale = time.monotonic() - at > CONTAINER_REFRESH_S
            if stale and key not in self._busy:
                self._busy.add(key)
                threading.Thread(target=self._refresh, args=(container,), daemon=True,
                                 name=f"docker-stats:{key[:12]}").start()
        return usage


class ResourceSampler:
    """One per daemon: ``usage(runner)`` for any unit, whatever its runtime."""

    def __init__(self) -> None:
        self.processes = ProcessTreeSampler()
        self.containers = ContainerSampler()
        self._calls = 0

    def usage(self, runner: Any) -> dict[str, Any]:
        instance = getattr(runner, "instance", None)
        if instance is None or str(getattr(runner, "state", "")) in ("inactive", "failed",
                                                                      "skipped", "backoff"):
            return NOT_RUNNING.as_dict()
        self._calls += 1
        if self._calls % 256 == 0:
            with contextlib.suppress(Exception):
                self.processes.forget_dead()
        container = getattr(instance, "container", None)
        if container is not None:
            return self.containers.sample(container).as_dict()
        if instance.pid is None:
            return NOT_RUNNING.as_dict()
        return self.processes.sample(instance.pid).as_dict()
