"""A memory cgroup per process unit: ``MemoryMax=`` / ``MemoryHigh=`` enforced by the kernel.

Which hierarchy: cgroup v2 when the unified hierarchy offers the ``memory`` controller
(``memory.max``, ``memory.high``, ``memory.events``), else the v1 memory controller
(``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes`` so swap cannot stand in for the
limit, ``memory.soft_limit_in_bytes`` for MemoryHigh=, ``memory.oom_control``). Our cgroups sit
below the daemon's own cgroup (what it was given, as systemd delegates), one folder per daemon
(named by a hash of its state dir: several daemons on a machine never share one) and one per
unit. Where neither can be created (not root, no delegation), :func:`for_unit` says None and
the runtime watches the tree's RSS instead (:mod:`.rss_watch`).

The program joins its cgroup before exec: a ``sh`` prefix writes its own pid to
``cgroup.procs`` and execs the rest (same pid), so no byte is allocated outside the limit and
nothing of ours runs between fork and exec. After the unit ends, the kernel's OOM count is read
and written to the unit's log (the "kernel record" the heal plugin recognises), then the empty
cgroup is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# What the unit's log gets when the kernel killed it for its cgroup's limit (heal/oom.py reads it).
OOM_NOTE = "killed by the kernel's OOM killer: its cgroup reached MemoryMax="
_JOIN = 'echo $$ > "$1" && shift && exec "$@"'


def _own_path(controller: str) -> str | None:
    """This process's cgroup path in ``controller``'s hierarchy ('' names v2's)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers.split(",") == [controller] or (controller == "" and controllers == ""):
            return path
    return None


def detect(root: Path = CGROUP_ROOT) -> tuple[str, Path] | None:
    """``("v2", dir)`` or ``("v1", dir)``: the writable cgroup under which we make ours."""
    v2_mount = root if (root / "cgroup.controllers").exists() else None
    own_v2 = _own_path("")
    if v2_mount is not None and own_v2 is not None:
        base = v2_mount / own_v2.lstrip("/")
        controllers = (base / "cgroup.controllers").read_text().split() if (
            base / "cgroup.controllers").exists() else []
        if "memory" in controllers and os.access(base, os.W_OK):
            return "v2", base
    v1_mount = root / "memory"
    own_v1 = _own_path("memory")
    if (v1_mount / "memory.limit_in_bytes").exists() and own_v1 is not None:
        base = v1_mount / own_v1.lstrip("/")
        if base.is_dir() and os.access(base, os.W_OK):
            return "v1", base
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class UnitCgroup:
    """One unit's memory cgroup."""

    version: str
    path: Path
    memory_max: int | None
    memory_high: int | None

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def join_prefix(self) -> list[str]:
        """Argv prefix that moves the program into this cgroup, then execs it (same pid)."""
        return ["/bin/sh", "-c", _JOIN, "llm-cgroup-join", str(self.procs)]

    def apply(self) -> None:
        """Create the folder and write the limits (again at every start: a reload may change them)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.version == "v2":
            # The controller must be enabled on the way down (daemon's cgroup → ours → the
            # unit's). The daemon's own cgroup refuses while it holds processes (v2's "no
            # internal processes" rule): then memory.max is missing below, the write fails and
            # the runtime falls back to the RSS watch.
            for parent in (self.path.parent.parent, self.path.parent):
                with contextlib.suppress(OSError):
                    _write(parent / "cgroup.subtree_control", "+memory")
            _write(self.path / "memory.max", str(self.memory_max or "max"))
            _write(self.path / "memory.high", str(self.memory_high or "max"))
            if (self.path / "memory.swap.max").exists():
                _write(self.path / "memory.swap.max", "0" if self.memory_max else "max")
            return
        limit = str(self.memory_max or -1)
        memsw = self.path / "memory.memsw.limit_in_bytes"
        # memsw must stay >= the plain limit: raise the plain one first when lowering memsw fails.
        with contextlib.suppress(OSError):
            _write(memsw, "-1")
        _write(self.path / "memory.limit_in_bytes", limit)
        if memsw.exists():
            _write(memsw, limit)
        _write(self.path / "memory.soft_limit_in_bytes", str(self.memory_high or -1))

    def usage(self) -> int | None:
        name = "memory.current" if self.version == "v2" else "memory.usage_in_bytes"
        return _read_int(self.path / name)

    def oom_kills(self) -> int:
        """How many processes the kernel killed in this cgroup for its limit."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> bool:
        """Remove the (empty) cgroup; False while a straggler still lives in it."""
        try:
            self.path.rmdir()
        except OSError:
            return False
        with contextlib.suppress(OSError):  # the daemon's folder, once its last unit is gone
            self.path.parent.rmdir()
        return True


def owner_folder(owner: str) -> str:
    """One folder per daemon: a short hash of its state dir."""
    return "llm-supervisor-" + hashlib.sha256(owner.encode()).hexdigest()[:12]


def for_unit(unit_name: str, owner: str, memory_max: int | None, memory_high: int | None,
             root: Path = CGROUP_ROOT) -> UnitCgroup | None:
    """The unit's cgroup when it has a memory limit and a hierarchy we may write, else None."""
    if memory_max is None and memory_high is None:
        return None
    found = detect(root)
    if found is None:
        return None
    version, base = found
    return UnitCgroup(version, base / owner_folder(owner) / unit_name, memory_max, memory_high)
