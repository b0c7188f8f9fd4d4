"""The set-up step that builds llama-cpp-python: silent and quick when the pinned version is
installed, a clear message (not a compiler error) when the build tools are missing, and a build of
only what the engine loads (checked by CMake on the real sdist), with ccache and a wheel cache
named by the options that change the binary."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_supervisor.model_server import install_llama_cpp
from tests.model_fixtures import REPO_ROOT


def test_installed_pin_is_a_no_op() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llm_supervisor.model_server.install_llama_cpp"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert install_llama_cpp.installed_version() == install_llama_cpp.REQUIREMENT.split("==")[1]


def test_missing_build_tools_are_named(tmp_path: Path) -> None:
    """A fresh venv (without llama-cpp-python) on a machine without cmake and g++."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "llm_supervisor.model_server.install_llama_cpp"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path / "empty"), "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert done.returncode == 1
    assert "cmake, c++ not found" in done.stderr and "apt-get install cmake g++" in done.stderr


def test_engine_only_options_ccache_and_the_wheel_key(tmp_path: Path) -> None:
    source = tmp_path / "src"
    args = install_llama_cpp.cmake_args({}, source, ccache=True)
    for option in ("-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                   "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                   "-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
                   f"-DCMAKE_PROJECT_llama_cpp_INCLUDE={source / install_llama_cpp.ENGINE_ONLY_CMAKE}"):
        assert option in args.split(), option
    plain = install_llama_cpp.cmake_args({}, source, ccache=False)
    assert "ccache" not in plain
    assert install_llama_cpp.cmake_args({"CMAKE_ARGS": "-DGGML_NATIVE=OFF"}, source, True) \
        == "-DGGML_NATIVE=OFF"
    # The wheel is named by what changes the binary: not where the source is, not the launcher.
    key = install_llama_cpp.wheel_key(args, source)
    elsewhere = tmp_path / "other"
    assert install_llama_cpp.wheel_key(install_llama_cpp.cmake_args({}, elsewhere, False),
                                       elsewhere) == key
    assert install_llama_cpp.wheel_key("-DGGML_NATIVE=OFF", source) != key
    # A native build is also named by the CPU's instruction set; a portable one is not.
    assert install_llama_cpp.wheel_key(args, source, "avx2 sse4_2") != \
        install_llama_cpp.wheel_key(args, source, "avx2 avx512f sse4_2")
    assert install_llama_cpp.wheel_key("-DGGML_NATIVE=OFF", source, "avx2") == \
        install_llama_cpp.wheel_key("-DGGML_NATIVE=OFF", source, "avx512f")
    if platform.machine() == "x86_64":  # every x86-64 CPU has SSE2: the line was found and read
        assert "sse2" in install_llama_cpp.cpu_flags().split()
    env = install_llama_cpp.build_env({"PATH": "/bin"}, args, tmp_path)
    assert env["CMAKE_ARGS"] == args and env["CCACHE_DIR"] == str(tmp_path / "ccache")
    assert env["CCACHE_BASEDIR"] == "/" and env["PATH"] == "/bin"


def _configure(source: Path, build: Path, args: str) -> None:
    done = subprocess.run(["cmake", "-S", str(source), "-B", str(build), *args.split()],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_engine_only_configure_leaves_out_llama_cpp_common(tmp_path: Path) -> None:
    """CMake itself, on the real llama-cpp-python sdist the set-up step unpacked: with our
    options llama.cpp's common library and cpp-httplib are not part of the build (though
    llama-cpp-python forces LLAMA_BUILD_COMMON=ON into the cache); without the include file
    they are, so the check can tell."""
    cache = install_llama_cpp.cache_dir(os.environ)
    source = cache / "src" / f"llama_cpp_python-{install_llama_cpp.VERSION}"
    if not (source / "CMakeLists.txt").is_file() or shutil.which("cmake") is None:
        pytest.skip(f"no unpacked sdist in {source} (the set-up step puts it there: "
                    "make setup with a new venv) or no cmake")
    (source / install_llama_cpp.ENGINE_ONLY_CMAKE).write_text(
        install_llama_cpp.ENGINE_ONLY_CMAKE_TEXT)
    args = install_llama_cpp.cmake_args({}, source, ccache=False)
    _configure(source, tmp_path / "engine-only", args)
    vendor = tmp_path / "engine-only" / "vendor" / "llama.cpp"
    assert (vendor / "src").is_dir() and (vendor / "ggml").is_dir()  # libllama, libggml*
    assert not (vendor / "common").exists() and not (vendor / "vendor" / "cpp-httplib").exists()
    assert not (vendor / "tools").exists()  # mtmd (LLAVA_BUILD=OFF), the programs
    stock = " ".join(a for a in args.split() if "CMAKE_PROJECT_llama_cpp_INCLUDE" not in a)
    _configure(source, tmp_path / "stock", stock)
    assert (tmp_path / "stock" / "vendor" / "llama.cpp" / "common").is_dir()
