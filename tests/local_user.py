"""A second local user for tests that play an attacker on the same machine: created as root
with a unique name per test run, removed afterwards (``llm-supervisor`` is never touched)."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"  # any user may run it; the venv may not be reachable


@dataclass(frozen=True)
class LocalUser:
    name: str
    uid: int
    gid: int

    def run(self, argv: list[str], timeout: float = 60, **kwargs: object
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user (no supplementary groups), from ``/``."""
        return subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                               "--clear-groups", *argv], capture_output=True, text=True,
                              timeout=timeout, cwd="/", **kwargs)  # type: ignore[call-overload]

    def python(self, code: str, *args: str, timeout: float = 60
               ) -> subprocess.CompletedProcess[str]:
        return self.run([SYSTEM_PYTHON, "-I", "-c", code, *args], timeout=timeout)


@contextmanager
def another_user() -> Iterator[LocalUser]:
    """Skips the test unless it runs as root with useradd, setpriv and a system python3."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second local user")
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"needs {SYSTEM_PYTHON} to run code as another user")
    name = f"llmt-{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        yield LocalUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
