"""The set-up step that builds llama-cpp-python: silent and quick when the pinned version is
installed, and a clear message (not a compiler error) when the build tools are missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
        env={"PATH": str(tmp_path / "empty"), "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 1
    assert "cmake, c++ not found" in done.stderr and "apt-get install cmake g++" in done.stderr
