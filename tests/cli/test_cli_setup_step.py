"""Set-up shows progress: each step of ``make setup`` is named and timed (setup_step.py, run
with the bare system Python before any venv exists)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.daemon_harness import PROJECT_DIR

STEP = PROJECT_DIR / "llm_supervisor" / "setup_step.py"
SYSTEM_PYTHON = shutil.which("python3") or sys.executable


def test_a_step_is_named_timed_and_keeps_the_commands_status():
    ok = subprocess.run([SYSTEM_PYTHON, str(STEP), "warm-up", "--hint", "about a second", "--",
                         "sh", "-c", "echo working; sleep 1.1"], capture_output=True, text=True,
                        timeout=30)
    assert ok.returncode == 0
    lines = ok.stdout.splitlines()
    assert lines[0] == "==> warm-up (about a second)" and lines[1] == "working"
    assert re.fullmatch(r"==> warm-up: done in 1\.\ds", lines[2]), lines
    failed = subprocess.run([SYSTEM_PYTHON, str(STEP), "broken", "--", "sh", "-c", "exit 7"],
                            capture_output=True, text=True, timeout=30)
    assert failed.returncode == 7
    assert re.search(r"==> broken: FAILED after \d+\.\ds \(exit 7\)", failed.stdout)
    missing = subprocess.run([SYSTEM_PYTHON, str(STEP), "nothing", "--", "/no/such/program"],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 127 and "FAILED" in missing.stdout


def test_every_setup_step_of_the_makefile_is_named():
    if shutil.which("make") is None:
        pytest.skip("make not installed: sudo apt-get install make")
    dry = subprocess.run(["make", "-n", "-B", "setup", f"PYTHON={SYSTEM_PYTHON}"],
                         cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True)
    for step in ("Python packages (PyTorch", "llama.cpp engine", "offline model",
                 "pip, setuptools, wheel"):
        assert f'setup_step.py "{step}' in dry.stdout, step
    pip_lines = [line for line in dry.stdout.splitlines() if "pip install" in line]
    assert pip_lines and all("setup_step.py" in line or line.startswith("  ")
                             for line in pip_lines), pip_lines
