"""What imports cost: ``python -X importtime`` output summed per package, and the memory each
big package adds in the order the daemon imports it (one fresh interpreter, its RSS read after
each step).

Used by bench_supervisor.py for the daemon (its stderr while it ran) and the CLI (one
``status``). Time is the "self" column summed over every module of a package, so the rows add up
to the total; memory is what each step adds over the steps before it (a dependency shared by two
packages counts once, in the first), so those rows add up to the total too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


@dataclass(frozen=True)
class ImportProfile:
    total_ms: float  # sum of every module's self time
    by_package: list[tuple[str, float]]  # (top-level package, ms), largest first
    ours_by_room: list[tuple[str, float]]  # (llm_supervisor.<room>, ms), largest first
    modules: int


def parse(stderr: str) -> ImportProfile:
    packages: Counter[str] = Counter()
    rooms: Counter[str] = Counter()
    modules = 0
    for line in stderr.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        modules += 1
        self_ms = int(match.group(1)) / 1000
        name = match.group(4)
        packages[name.split(".")[0]] += self_ms
        if name.startswith("llm_supervisor."):
            rooms[".".join(name.split(".")[:2])] += self_ms
    return ImportProfile(sum(packages.values()), packages.most_common(), rooms.most_common(),
                         modules)


def memory_in_order(steps: list[str], hidden: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    """[(step, MB it adds)] for ``steps`` imported one after another in a fresh interpreter,
    the first row being the bare interpreter itself; ``hidden`` modules fail to import
    meanwhile, as the daemon's unused extras do (llm_supervisor.core.lean_imports). RSS from
    /proc/self/statm, not ru_maxrss: Linux keeps the peak across fork+exec, so a child of a big
    process would report its parent's size."""
    code = (f"import importlib, os, sys\nsys.modules.update(dict.fromkeys({list(hidden)!r}))\n"
            "def rss():\n"
            "    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
            "print(rss())\n"
            f"for name in {steps!r}:\n"
            "    importlib.import_module(name)\n"
            "    print(rss())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    sizes = [int(line) / 1e6 for line in out.stdout.split()]
    return [("interpreter", sizes[0])] + [
        (name, after - before) for name, before, after in zip(steps, sizes[:-1], sizes[1:], strict=True)]


def render(title: str, profile: ImportProfile, top: int = 12) -> list[str]:
    lines = [f"{title}: {profile.modules} modules, {profile.total_ms:.0f} ms of import time"]
    for name, ms in profile.by_package[:top]:
        lines.append(f"  {name:28}{ms:>8.1f} ms  {100 * ms / profile.total_ms:>4.0f} %")
    if profile.ours_by_room:
        rooms = ", ".join(f"{name.split('.', 1)[1]} {ms:.0f}" for name, ms in
                          profile.ours_by_room[:8])
        lines.append(f"  of which llm_supervisor by room (ms): {rooms}")
    return lines
