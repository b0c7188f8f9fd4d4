"""``MemoryMax=`` / ``MemoryHigh=`` for a process unit: a cgroup where the kernel lets us make
one (:mod:`.cgroups`), else a watch of the process tree's RSS (pm2's ``max_memory_restart``),
which kills the tree once it passes ``MemoryMax=``. Either way, when the limit ended the unit
its log says so in one line the heal plugin recognises (``heal/oom.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

import psutil
import structlog

from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.runtimes.process import cgroups
from llm_supervisor.runtimes.process.identity import OWNER_MARKER
from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.runtime.memory")

RSS_NOTE = "killed by the RSS watch: its process tree passed MemoryMax="
RSS_POLL_SEC = 0.2


def _mib(size: int | None) -> str:
    return "infinity" if size is None else f"{size / (1 << 20):.0f}M"


class MemoryGuard:
    """Made before the spawn (``prefix``), started with the instance, ended with its exit."""

    def __init__(self, unit: Unit, owner: str, log_: UnitLog):
        self.unit = unit
        self.log = log_
        self.cgroup: cgroups.UnitCgroup | None = None
        self._oom_before = 0
        self._watch: asyncio.Task[None] | None = None
        self._rss_killed = False
        self._ended = False
        self.mode = "none"
        if unit.memory_max is None and unit.memory_high is None:
            return
        cgroup = cgroups.for_unit(unit.name, owner, unit.memory_max, unit.memory_high)
        if cgroup is not None:
            try:
                cgroup.apply()
                self.cgroup, self.mode = cgroup, f"cgroup {cgroup.version}"
                self._oom_before = cgroup.oom_kills()
            except OSError as exc:
                log.warning("cgroup_unavailable", unit=unit.name, path=str(cgroup.path),
                            error=str(exc), fallback="RSS watch")
        if self.cgroup is None and unit.memory_max is not None:
            self.mode = "RSS watch"

    @property
    def prefix(self) -> list[str]:
        return self.cgroup.join_prefix() if self.cgroup is not None else []

    def started(self, pid: int, pgid: int) -> None:
        if self.mode == "none":
            return
        self.log.note(f"memory limit MemoryMax={_mib(self.unit.memory_max)} "
                      f"MemoryHigh={_mib(self.unit.memory_high)} enforced by {self.mode}")
        if self.mode == "RSS watch":
            self._watch = asyncio.create_task(self._watch_rss(pid, pgid))

    def usage(self, pid: int | None) -> int | None:
        if self.cgroup is not None:
            return self.cgroup.usage()
        return None if pid is None else _tree_rss(pid)

    async def _watch_rss(self, pid: int, pgid: int) -> None:
        limit = self.unit.memory_max
        assert limit is not None
        while True:
            rss = _tree_rss(pid)
            if rss is None:
                return
            if rss > limit:
                self._rss_killed = True
                self.log.note(f"{RSS_NOTE}{_mib(limit)} (RSS {_mib(rss)})")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                return
            await asyncio.sleep(RSS_POLL_SEC)

    def ended(self) -> None:
        """After the unit's main process was reaped: say whether the limit killed it (once)."""
        if self._ended:
            return
        self._ended = True
        if self._watch is not None:
            self._watch.cancel()
        if self.cgroup is None:
            return
        kills = self.cgroup.oom_kills() - self._oom_before
        if kills > 0:
            self.log.note(f"{cgroups.OOM_NOTE}{_mib(self.unit.memory_max)} "
                          f"({kills} process(es) killed)")
        self.cgroup.remove()


def _tree_rss(pid: int) -> int | None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def for_start(unit: Unit, env: Mapping[str, str], log_: UnitLog) -> MemoryGuard:
    return MemoryGuard(unit, env.get(OWNER_MARKER, "") or "standalone", log_)
