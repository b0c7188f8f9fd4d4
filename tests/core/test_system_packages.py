"""The Debian package list has one source (src/llm_supervisor/core/system_packages.py): the Makefile
reads it with the bare system Python, and every shipped unit's InstallHint= and condition name
packages and programs from it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from llm_supervisor.config.paths import default_units_dir
from llm_supervisor.core.system_packages import UNIT_PROGRAMS, apt_packages
from tests.daemon_harness import PROJECT_DIR


def test_makefile_installs_the_list() -> None:
    if shutil.which("make") is None:
        pytest.skip("make not installed: sudo apt-get install make")
    dry = subprocess.run(["make", "-n", "system-packages", f"PYTHON={sys.executable}"],
                         cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True)
    installed = re.search(r"apt-get install -y -q ([^;\n]+?)\s*;", dry.stdout)
    assert installed and installed.group(1).split() == apt_packages(), dry.stdout


def test_shipped_units_name_listed_packages() -> None:
    checked = 0
    for path in sorted(default_units_dir().glob("*.service")):
        text = path.read_text()
        for hint in re.findall(r"^InstallHint=.*apt-get install ([\w .+-]+)", text, re.M):
            packages = hint.split("(")[0].split()
            assert set(packages) <= set(apt_packages()), f"{path.name}: {packages}"
            checked += 1
        for needed in re.findall(r"^Condition(?:Executable|PathExists)=(\S+)", text, re.M):
            if "$" not in needed:
                assert needed in UNIT_PROGRAMS, f"{path.name}: {needed} has no package listed"
    assert checked >= 5
