"""CPU and resident memory of each unit: its whole process tree, or its container.

``status``, ``status --json``, ``/metrics`` and the dashboard read them from one
:class:`ResourceSampler` kept by the manager. CPU % is a rate, so the sampler keeps what it saw
last (each process's CPU seconds at the last look at the process table, the container's last
CPU counters) and answers the use
*between two looks*. The first look at a process uses its lifetime average, as ``ps`` does, so
even the first ``status`` says something true.

Containers are measured through the engine's stats API (``one_shot``, not streamed), in a
thread: a slow engine never holds the event loop, and the answer is the last one it gave
(at most :data:`CONTAINER_REFRESH_S` old).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from llm_supervisor.supervisor.process_table import ProcessTable, read_table

CONTAINER_REFRESH_S = 2.0
CHILDREN_MAP_S = 0.5


@dataclass
class _Seen:
    """What one process had used at one look at the process table, and the rate then."""

    cpu_seconds: float
    at: float
    percent: float


@dataclass
class Usage:
    cpu_percent: float | None = None
    memory_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        cpu = None if self.cpu_percent is None else round(self.cpu_percent, 1)
        return {"cpu_percent": cpu, "memory_bytes": self.memory_bytes}


NOT_RUNNING = Usage()


def _alive(pid: int) -> bool:
    """One ``kill(pid, 0)``: the pids sampled are processes, never thread ids, so
    psutil.pid_exists's extra read of ``/proc/PID/status`` (a thousand a round) is not needed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process (a unit that changed user) is alive
        return True
    return True


class ProcessTreeSampler:
    """CPU % (100 = one core) and RSS summed over a root process and all its descendants.

    Every figure comes from one look at the whole process table (:mod:`.process_table`), reused
    for :data:`CHILDREN_MAP_S`: ``status`` of 1,000 units is one pass over ``/proc``, not 1,000
    scans and three reads per process. :meth:`refresh` takes a new look at the start of a round."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, float], _Seen] = {}
        self._table: ProcessTable | None = None

    def refresh(self) -> ProcessTable:
        self._table = read_table()
        return self._table

    def _current(self) -> ProcessTable:
        table = self._table
        if table is None or time.monotonic() - table.at > CHILDREN_MAP_S:
            table = self.refresh()
        return table

    def sample(self, pid: int, table_is_fresh: bool = False) -> Usage:
        """``table_is_fresh``: the table was read for this round of samples (usages()), so it
        says itself whether the process runs; a kept one may list a process ended since."""
        if not table_is_fresh and not _alive(pid):
            return NOT_RUNNING
        table = self._current()
        if pid not in table.entries:  # started after the last look
            table = self.refresh()
            if pid not in table.entries:
                return NOT_RUNNING
        wall_now = time.time()
        cpu = 0.0
        rss = 0
        stack = [pid]
        while stack:
            current = stack.pop()
            stack.extend(table.children.get(current, ()))
            entry = table.entries.get(current)
            if entry is None:
                continue
            rss += entry.rss
            key = (current, entry.started)
            seen = self._seen.get(key)
            if seen is not None and seen.at == table.at:
                percent = seen.percent  # the same look: the same answer
            elif seen is not None and table.at > seen.at:
                percent = max(0.0, entry.cpu_seconds - seen.cpu_seconds) / (
                    table.at - seen.at) * 100
            else:  # the first look: its lifetime average, as ``ps`` shows
                age = wall_now - entry.started
                percent = entry.cpu_seconds / age * 100 if age > 0 else 0.0
            cpu += percent
            self._seen[key] = _Seen(entry.cpu_seconds, table.at, percent)
        return Usage(cpu, rss)

    def forget_dead(self) -> None:
        """Drop processes that have ended (called now and then, so the table does not grow)."""
        table = self._current()
        for key in list(self._seen):
            entry = table.entries.get(key[0])
            if entry is None or entry.started != key[1]:
                del self._seen[key]


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

    def usages(self, runners: list[Any]) -> list[dict[str, Any]]:
        """``usage`` of many units from one fresh look at the process table."""
        self.processes.refresh()
        return [self.usage(runner, table_is_fresh=True) for runner in runners]

    def usage(self, runner: Any, table_is_fresh: bool = False) -> dict[str, Any]:
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
        return self.processes.sample(instance.pid, table_is_fresh).as_dict()
