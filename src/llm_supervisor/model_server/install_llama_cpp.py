"""Set-up step: install llama-cpp-python (the llama.cpp engine) into this interpreter's venv.

PyPI has no binary wheel of it for Linux: it is compiled from source (cmake + a C++ compiler,
minutes on two cores). This step keeps that cost down three ways:

- **Only what the engine loads.** ``llama_cpp`` loads libllama, libggml* and (for images)
  libmtmd; we use neither images nor llama.cpp's "common" library (argument parsing, chat
  templates, downloads: 27,000 lines of C++ plus cpp-httplib). llama-cpp-python's CMakeLists
  forces ``LLAMA_BUILD_COMMON`` on (``set(... CACHE ... FORCE)``), so a ``-D`` cannot switch it
  off; a normal variable set from ``CMAKE_PROJECT_llama_cpp_INCLUDE`` (run at the end of its
  ``project()``) shadows the cache entry (policy CMP0126, NEW under its cmake_minimum 3.21).
  Tools, tests, examples and the server are off as well (already off when llama.cpp is a
  subdirectory; said explicitly so an upstream default change cannot bring them back).
- **A compiler cache.** Where ``ccache`` is installed it is the compiler launcher. Its hits need
  the same source path each time, so the sdist is unpacked once into a fixed folder under
  ``~/.cache/llm-supervisor`` (pip would use a new random temp folder per build).
- **A wheel cache keyed by the build options.** The built wheel is kept under the same folder,
  named by the version and a hash of ``CMAKE_ARGS``: the next venv on this machine installs it
  in seconds. (pip's own wheel cache ignores ``CMAKE_ARGS``: it would hand a native build made
  with other options back.)

``-DGGML_NATIVE=ON`` compiles for this CPU's instruction set (AVX2/AVX-512): CI builds and runs
on the same machine kind. Set ``CMAKE_ARGS`` to replace our options entirely (for example
``-DGGML_NATIVE=OFF`` for a wheel other CPUs can use); ``LLM_SUPERVISOR_CACHE_DIR`` moves the
cache. Compiling in silence looks like a hang, so a heartbeat line comes every 30 s.

Run by ``make setup``: ``python -m llm_supervisor.model_server.install_llama_cpp``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

REQUIREMENT = "llama-cpp-python==0.3.36"  # keep in step with pyproject.toml
VERSION = REQUIREMENT.split("==", 1)[1]
HEARTBEAT_S = 30.0
# The CMake project name in llama-cpp-python's top CMakeLists.txt (``project(llama_cpp)``).
PROJECT_INCLUDE_VAR = "CMAKE_PROJECT_llama_cpp_INCLUDE"
ENGINE_ONLY_CMAKE = "llm-supervisor-engine-only.cmake"
ENGINE_ONLY_CMAKE_TEXT = """\
# Written by llm_supervisor.model_server.install_llama_cpp: build only what the Python engine
# loads. llama-cpp-python forces LLAMA_BUILD_COMMON into the cache; this normal variable wins
# over it (CMP0126), so llama.cpp's common library and cpp-httplib are not compiled.
set(LLAMA_BUILD_COMMON OFF)
"""
# GGML_NATIVE: this CPU's instruction set. LLAVA_BUILD=OFF: no multimodal (mtmd/clip) library,
# which we never load. The LLAMA_BUILD_* programs are never loaded either.
ENGINE_ONLY_ARGS = (
    "-DGGML_NATIVE=ON",
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
)
CCACHE_ARGS = ("-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_tools() -> list[str]:
    return [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]


def cache_dir(env: Mapping[str, str]) -> Path:
    """``$LLM_SUPERVISOR_CACHE_DIR`` or ``$XDG_CACHE_HOME/llm-supervisor`` (``~/.cache/...``)."""
    if env.get("LLM_SUPERVISOR_CACHE_DIR"):
        return Path(env["LLM_SUPERVISOR_CACHE_DIR"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "llm-supervisor"


def cmake_args(env: Mapping[str, str], source: Path, ccache: bool) -> str:
    """The user's ``CMAKE_ARGS`` unchanged when set, else the engine-only options (+ ccache)."""
    if env.get("CMAKE_ARGS"):
        return env["CMAKE_ARGS"]
    args = [*ENGINE_ONLY_ARGS, f"-D{PROJECT_INCLUDE_VAR}={source / ENGINE_ONLY_CMAKE}"]
    if ccache:
        args += CCACHE_ARGS
    return " ".join(args)


def wheel_key(args: str, source: Path, cpu_flags: str = "") -> str:
    """Names the wheel (beside the version in its folder's name) by what changes the binary: the
    options and, for a native build, this CPU's instruction set (a home folder shared between
    machines must not hand an AVX-512 build to a CPU without it). The source folder's path
    (inside the include option) and the compiler launcher do not change it: left out."""
    significant = args.replace(str(source), "<src>")
    for launcher in CCACHE_ARGS:
        significant = significant.replace(launcher, "")
    if "-DGGML_NATIVE=ON" in significant.split():
        significant += f" cpu:{cpu_flags}"
    return hashlib.sha256(" ".join(significant.split()).encode()).hexdigest()[:12]


def cpu_flags() -> str:
    """The first ``flags`` line of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ""


def build_env(env: Mapping[str, str], args: str, cache: Path) -> dict[str, str]:
    """ccache keyed on paths relative to the build folder (pip's temp build folders differ)."""
    out = {**env, "CMAKE_ARGS": args}
    out.setdefault("CCACHE_DIR", str(cache / "ccache"))
    out.setdefault("CCACHE_BASEDIR", "/")
    out.setdefault("CCACHE_NOHASHDIR", "1")
    return out


def unpacked_source(cache: Path) -> Path:
    """The sdist unpacked once into ``cache/src/llama_cpp_python-VERSION`` (a fixed path, for
    ccache), with our engine-only CMake include beside its CMakeLists.txt."""
    final = cache / "src" / f"llama_cpp_python-{VERSION}"
    if not (final / "CMakeLists.txt").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=".unpack-",
                                         ignore_cleanup_errors=True) as staging:
            _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                  ":all:", "--progress-bar", "off", "-d", staging, REQUIREMENT])
            (sdist,) = Path(staging).glob("*.tar.gz")
            with tarfile.open(sdist) as tar:
                tar.extractall(staging, filter="data")
            shutil.rmtree(final, ignore_errors=True)
            os.rename(Path(staging) / final.name, final)
    (final / ENGINE_ONLY_CMAKE).write_text(ENGINE_ONLY_CMAKE_TEXT)
    return final


def build_wheel(source: Path, dest: Path, env: dict[str, str]) -> Path:
    """``pip wheel`` the source into ``dest`` (staged, so a failed build leaves nothing)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-",
                                     ignore_cleanup_errors=True) as staging:
        code = run_with_heartbeat(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--progress-bar", "off",
             "-w", staging, str(source)], env, f"building {REQUIREMENT}")
        if code != 0:
            raise subprocess.CalledProcessError(code, "pip wheel")
        built = _the_wheel(Path(staging))
        if built is None:
            raise ValueError(f"pip wheel wrote no llama_cpp_python wheel into {staging}")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staging, dest)
    return dest / built.name


def run_with_heartbeat(argv: list[str], env: Mapping[str, str], what: str) -> int:
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=dict(env))
    while True:
        try:
            return proc.wait(timeout=HEARTBEAT_S)
        except subprocess.TimeoutExpired:
            print(f"  still {what}: {_elapsed(started)} so far", flush=True)


def main() -> int:
    if installed_version() == VERSION:
        return 0
    missing = missing_tools()
    if missing:
        print(f"cannot build {REQUIREMENT}: {', '.join(missing)} not found. Install them "
              "(Debian: apt-get install cmake g++; `make setup` does it as root).", file=sys.stderr)
        return 1
    started = time.monotonic()
    cache = cache_dir(os.environ)
    try:
        source = unpacked_source(cache)
        ccache = shutil.which("ccache") is not None
        args = cmake_args(os.environ, source, ccache)
        wheels = cache / "wheels" / f"llama-cpp-python-{VERSION}-{wheel_key(args, source, cpu_flags())}"
        wheel = _the_wheel(wheels) if wheels.is_dir() else None
        if wheel is None:
            print(f"building {REQUIREMENT} from source (minutes, once per machine and options; "
                  f"compiler cache: {'ccache' if ccache else 'none (apt-get install ccache)'}; "
                  f"CMAKE_ARGS={args})...", flush=True)
            wheel = build_wheel(source, wheels, build_env(os.environ, args, cache))
        else:
            print(f"reusing the wheel built earlier: {wheel}", flush=True)
        _run([sys.executable, "-m", "pip", "install", "-q", "--progress-bar", "off", str(wheel)])
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        print(f"building {REQUIREMENT} failed after {_elapsed(started)}: {exc}. The compiler's "
              f"output is above; `rm -rf {cache}` starts over from a fresh download.",
              file=sys.stderr)
        return 1
    print(f"{REQUIREMENT} installed in {_elapsed(started)}", flush=True)
    return 0


def _the_wheel(folder: Path) -> Path | None:
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    return found[0] if found else None


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True)


def _elapsed(started: float) -> str:
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    return f"{minutes}m{seconds:02d}s"


if __name__ == "__main__":
    sys.exit(main())
