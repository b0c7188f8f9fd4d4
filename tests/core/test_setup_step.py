"""Set-up shows progress and its cost: each step of ``make setup``/``make test`` is named and
timed (setup_step.py, run with the bare system Python before any venv exists), recorded in
``$LLM_SETUP_STEP_LOG``, and ``make test`` ends with a table of this run's steps."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon_harness import PROJECT_DIR

STEP = PROJECT_DIR / "src" / "llm_supervisor" / "core" / "setup_step.py"
SYSTEM_PYTHON = shutil.which("python3") or sys.executable


def step(*args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LLM_SETUP_STEP_LOG"}
    if log is not None:
        env["LLM_SETUP_STEP_LOG"] = str(log)
    return subprocess.run([SYSTEM_PYTHON, str(STEP), *args], capture_output=True, text=True,
                          timeout=30, env=env)


def test_a_step_is_named_timed_and_keeps_the_commands_status():
    ok = step("warm-up", "--hint", "about a second", "--", "sh", "-c", "echo working; sleep 1.1")
    assert ok.returncode == 0
    lines = ok.stdout.splitlines()
    assert lines[0] == "==> warm-up (about a second)" and lines[1] == "working"
    assert re.fullmatch(r"==> warm-up: done in 1\.\ds", lines[2]), lines
    failed = step("broken", "--", "sh", "-c", "exit 7")
    assert failed.returncode == 7
    assert re.search(r"==> broken: FAILED after \d+\.\ds \(exit 7\)", failed.stdout)
    missing = step("nothing", "--", "/no/such/program")
    assert missing.returncode == 127 and "FAILED" in missing.stdout


def test_steps_are_recorded_and_summed_for_this_run_only(tmp_path: Path):
    log = tmp_path / "artifacts" / "steps.tsv"
    log.parent.mkdir()
    log.write_text(f"{time.time() - 3600:.3f}\t99.000\t0\tan earlier run's step\n")
    since = f"{time.time():.3f}"
    assert step("venv", "--", "sh", "-c", "sleep 0.3", log=log).returncode == 0
    assert step("apt", "--", "sh", "-c", "exit 3", log=log).returncode == 3
    assert step("absent", "--", "/no/such/program", log=log).returncode == 127
    rows = [line.split("\t") for line in log.read_text().splitlines()]
    assert [(r[2], r[3]) for r in rows[1:]] == [("0", "venv"), ("3", "apt"), ("127", "absent")]
    assert 0.3 <= float(rows[1][1]) < 5
    table = step("--summary", "--since", since, log=log)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].startswith("==> time per step")
    assert "an earlier run's step" not in table.stdout
    assert re.fullmatch(r"\s+venv\s+0\.\ds", lines[1]), lines
    assert re.fullmatch(r"\s+apt\s+\d\.\ds  FAILED \(exit 3\)", lines[2]), lines
    assert "absent" in lines[3] and "FAILED (exit 127)" in lines[3]
    assert re.fullmatch(r"\s+total\s+\d\.\ds", lines[4]), lines
    nothing = step("--summary", "--since", f"{time.time() + 10:.3f}", log=log)
    assert "no step ran: everything was already set up" in nothing.stdout


def test_every_setup_step_of_the_makefile_is_named():
    if shutil.which("make") is None:
        pytest.skip("make not installed: sudo apt-get install make")
    dry = subprocess.run(["make", "-n", "-B", "setup", f"PYTHON={SYSTEM_PYTHON}"],
                         cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True)
    for name in ("Python packages (PyTorch", "llama.cpp engine", "offline model",
                 "pip, setuptools, wheel"):
        assert f'setup_step.py "{name}' in dry.stdout, name
    pip_lines = [line for line in dry.stdout.splitlines() if "pip install" in line]
    assert pip_lines and all("setup_step.py" in line or line.startswith("  ")
                             for line in pip_lines), pip_lines


def test_make_test_times_the_tests_and_prints_the_table(tmp_path: Path):
    if shutil.which("make") is None:
        pytest.skip("make not installed: sudo apt-get install make")
    # make -n still runs the recipe line that calls $(MAKE) (the checks step): its timing goes to
    # a file of this test's, not into the table of the `make test` that runs this test.
    env = {**os.environ, "LLM_SETUP_STEP_LOG": str(tmp_path / "steps.tsv")}
    dry = subprocess.run(["make", "-n", "test", f"PYTHON={SYSTEM_PYTHON}",
                          f"LLM_SETUP_STEP_LOG={tmp_path / 'steps.tsv'}"], env=env,
                         cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True)
    assert re.search(r'setup_step.py "tests \(pytest\)" -- \S+ -m pytest', dry.stdout), dry.stdout
    assert re.search(r'setup_step.py "tests that use the Docker engine \(pytest\)" -- \S+ -m pytest '
                     r"-m docker", dry.stdout), dry.stdout
    assert re.search(r"setup_step.py --summary --since \d+;", dry.stdout), dry.stdout
