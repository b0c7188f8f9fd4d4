"""``images build`` never makes the Debian base image from unverified packages (issue 18,
item 13): debootstrap runs with the Debian archive keyring and ``--force-check-gpg``; a missing
keyring stops the build before debootstrap runs, with what to install; and, where the Debian
mirror answers, a keyring that does not sign it makes the real debootstrap refuse (fail closed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker import base_image


def test_debootstrap_checks_signatures_with_the_archive_keyring(tmp_path: Path) -> None:
    argv = base_image.debootstrap_argv("/usr/sbin/debootstrap", tmp_path / "rootfs",
                                       Path(base_image.DEFAULT_KEYRING))
    assert "--force-check-gpg" in argv
    assert f"--keyring={base_image.DEFAULT_KEYRING}" in argv
    assert argv.index("--force-check-gpg") < argv.index(base_image.SUITE)


def test_a_missing_keyring_stops_the_build_before_debootstrap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("needs root and debootstrap (apt-get install debootstrap)")
    monkeypatch.setenv("LLM_SUPERVISOR_DEBIAN_KEYRING", str(tmp_path / "no-such.gpg"))
    said: list[str] = []
    with pytest.raises(RuntimeError_, match="keyring .* is missing"):
        base_image.make_base_image(client=None, output=said.append)
    assert not any("debootstrap --variant" in line for line in said)


def test_a_mirror_not_signed_by_the_keyring_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debootstrap = shutil.which("debootstrap")
    wrong = Path("/usr/share/keyrings/debian-archive-removed-keys.gpg")
    if os.geteuid() != 0 or debootstrap is None or not wrong.is_file():
        pytest.skip("needs root, debootstrap and debian-archive-keyring")
    argv = base_image.debootstrap_argv(debootstrap, tmp_path / "rootfs", wrong)
    argv.insert(1, "--download-only")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if "Failed getting release file" in done.stdout + done.stderr:
        pytest.skip(f"the Debian mirror {base_image.mirror()} does not answer here")
    assert done.returncode != 0
    assert "signature" in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
