"""Set-up step: install llama-cpp-python (the llama.cpp engine) into this interpreter's venv.

PyPI has no binary wheel of it for Linux: pip compiles llama.cpp (cmake + a C++ compiler, a few
minutes on two cores). Compiling in silence looks like a hang, so this says what it is doing and
how long it took. pip keeps the built wheel in its cache: the next venv on this machine installs
in seconds. ``-DGGML_NATIVE=ON`` compiles for this CPU's instruction set (AVX2/AVX-512); CI builds
and runs on the same machine kind, so that is what we want. Set ``CMAKE_ARGS`` to override (for
example ``-DGGML_NATIVE=OFF`` for a wheel other CPUs can use).

Run by ``make setup``: ``python -m llm_supervisor.model_server.install_llama_cpp``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time

REQUIREMENT = "llama-cpp-python==0.3.36"  # keep in step with pyproject.toml
HEARTBEAT_S = 30.0
# GGML_NATIVE: this CPU's instruction set. LLAVA_BUILD=OFF: no multimodal (mtmd/clip) library,
# which we never load; measured here it cuts the build's CPU time by about a quarter
# (user 6m12s -> 4m31s; wall 4m02s -> 3m28s on two shared cores).
DEFAULT_CMAKE_ARGS = "-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF"


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_tools() -> list[str]:
    return [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]


def main() -> int:
    wanted = REQUIREMENT.split("==", 1)[1]
    if installed_version() == wanted:
        return 0
    missing = missing_tools()
    if missing:
        print(
            f"cannot build {REQUIREMENT}: {', '.join(missing)} not found. "
            "Install them (Debian: apt-get install cmake g++; `make setup` does it as root).",
            file=sys.stderr,
        )
        return 1
    env = dict(os.environ)
    env.setdefault("CMAKE_ARGS", DEFAULT_CMAKE_ARGS)
    print(
        f"building {REQUIREMENT} from source (several minutes, once per venv; "
        f"CMAKE_ARGS={env['CMAKE_ARGS']})...",
        flush=True,
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pip", "install", "-q", "--progress-bar", "off", REQUIREMENT], env=env
    )
    while True:
        try:
            code = proc.wait(timeout=HEARTBEAT_S)
            break
        except subprocess.TimeoutExpired:
            print(f"  still building {REQUIREMENT}: {_elapsed(started)} so far", flush=True)
    if code != 0:
        print(f"building {REQUIREMENT} failed after {_elapsed(started)}", file=sys.stderr)
        return code
    print(f"{REQUIREMENT} installed in {_elapsed(started)}", flush=True)
    return 0


def _elapsed(started: float) -> str:
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    return f"{minutes}m{seconds:02d}s"


if __name__ == "__main__":
    sys.exit(main())
