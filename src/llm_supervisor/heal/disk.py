"""A full disk: check free space before big writes; on ENOSPC free only what we own and can
rebuild, say what was freed, and retry once.

What counts as ours and rebuildable: staging, old-model and download directories next to the
model dir (``.NAME.staging-*``, ``.NAME.old-*``, ``.NAME.download``, left by an interrupted
fetch or conversion), partial
downloads (``*.incomplete``) anywhere below the state dir or in those staging dirs, rotated logs
beyond the newest (``NAME.log.2`` and up, in the log dir), and our dangling images (an older
build of one of our tags, labelled with this daemon's owner id). Never a model's files, never a file
outside those places, and every walk is by descriptor without following links (the model dir
may belong to an unprivileged user).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.core.disk_space import free_bytes, human, shortfall
from llm_supervisor.heal.evidence import first_match, last_run
from llm_supervisor.runtimes.docker import labels

__all__ = ["KIND", "Freed", "evidence", "free_bytes", "reclaim", "reclaim_images", "shortfall"]

KIND = "disk_full"
PATTERNS = [re.compile(p, re.IGNORECASE) for p in (
    r"No space left on device", r"\[Errno 28\]", r"\bENOSPC\b", r"Disk quota exceeded",
    r"needs .+ but only .+ is free")]  # core.disk_space.shortfall, said before a big write
_ROTATED = re.compile(r".+\.log\.(\d+)$")


def evidence(log_tail: Sequence[str]) -> str | None:
    return first_match(last_run(log_tail), PATTERNS)


@dataclass
class Freed:
    paths: list[str] = field(default_factory=list)
    bytes: int = 0

    def describe(self) -> str:
        if not self.paths:
            return "nothing of ours to free"
        return f"freed {human(self.bytes)} ({len(self.paths)} item(s): {', '.join(self.paths[:3])}" + (
            ", ...)" if len(self.paths) > 3 else ")")


def _treehuman(path: Path) -> int:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return info.st_blocks * 512
    total = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _remove(path: Path, freed: Freed) -> None:
    try:
        size = _treehuman(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # rmtree never follows symlinks inside the tree
        else:
            path.unlink()
    except OSError:
        return
    freed.paths.append(str(path))
    freed.bytes += size


def reclaim(model_dir: Path | None, state_dir: Path | None, log_dir: Path | None) -> Freed:
    freed = Freed()
    if model_dir is not None and model_dir.parent.is_dir():
        name = model_dir.name
        for pattern in (f".{name}.staging-*", f".{name}.old-*", f".{name}.download"):
            for leftover in sorted(model_dir.parent.glob(pattern)):
                _remove(leftover, freed)
    if state_dir is not None and state_dir.is_dir():
        for root, _dirs, files in os.walk(state_dir, followlinks=False):
            for file_name in files:
                if file_name.endswith(".incomplete"):
                    _remove(Path(root) / file_name, freed)
    if log_dir is not None and log_dir.is_dir():
        for entry in sorted(log_dir.iterdir()):
            match = _ROTATED.fullmatch(entry.name)
            if match and int(match.group(1)) >= 2 and entry.is_file() and not entry.is_symlink():
                _remove(entry, freed)
    return freed


def reclaim_images(client: Any, owner: str, freed: Freed) -> None:
    """Our dangling images (an older build of one of our tags): rebuilt from the unit's
    Build= when needed. Only images labelled with this daemon's owner id; never the user's."""
    try:
        images = client.images.list(filters={"dangling": True,
                                              "label": f"{labels.OWNER}={owner}"})
    except Exception:  # no engine: nothing to free there
        return
    for image in images:
        try:
            size = int(image.attrs.get("Size") or 0)
            client.images.remove(image.id, noprune=False)
        except Exception:  # still used by a container, or gone meanwhile
            continue
        freed.paths.append(f"image {image.short_id}")
        freed.bytes += size
