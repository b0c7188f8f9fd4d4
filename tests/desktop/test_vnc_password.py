"""The VNC password file we write is byte-for-byte what ``x11vnc -storepasswd`` writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from llm_supervisor.desktop.secrets_store import (
    DesktopFiles,
    ensure_password,
    generate_password,
    read_password,
)
from llm_supervisor.desktop.vncauth import encrypt_block, rfbauth_bytes


def test_des_matches_the_classic_test_vector() -> None:
    key, plain = bytes.fromhex("133457799BBCDFF1"), bytes.fromhex("0123456789ABCDEF")
    assert encrypt_block(key, plain) == bytes.fromhex("85E813540F0AB405")


@pytest.mark.parametrize("password", ["ab", "abcdefgh", "Zq9xYw3K", "longer-than-8-chars"])
def test_rfbauth_file_equals_x11vnc_storepasswd(tmp_path: Path, password: str) -> None:
    if shutil.which("x11vnc") is None:
        pytest.skip("x11vnc not installed: sudo apt-get install x11vnc")
    reference = tmp_path / "ref.passwd"
    # A throwaway test password on a command line is fine; production never does this.
    subprocess.run(["x11vnc", "-storepasswd", password, str(reference)], check=True,
                   capture_output=True, timeout=30)
    assert rfbauth_bytes(password) == reference.read_bytes()


def test_password_is_generated_once_and_stored_private(tmp_path: Path) -> None:
    files = DesktopFiles(tmp_path)
    first = ensure_password(files)
    assert len(first) == 8 and first != "password"
    assert ensure_password(files) == first == read_password(files)
    assert files.rfbauth.read_bytes() == rfbauth_bytes(first)
    for path in (files.password, files.rfbauth):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files.directory).st_mode) == 0o700
    files.rfbauth.unlink()  # a lost -rfbauth file is rewritten from the kept password
    assert ensure_password(files) == first and files.rfbauth.exists()
    assert len({generate_password() for _ in range(50)}) == 50
