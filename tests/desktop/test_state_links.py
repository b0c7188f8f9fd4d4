"""Root never follows a link the unit user planted in the directories it owns (issue 18, items 5
and 12): the desktop's password and ``-rfbauth`` files in ``STATE_DIR/desktop`` (read for
``GET /novnc``, written by the Docker desktop's ``ExecStartPre``) and the Docker gateway's
``STATE_DIR/gateway/docker``. A planted link is replaced, never read, written or chmodded
through; the container's VNC password sits in a 0700 root directory, only the file the image's.

The directories are handed to a real second local user, as ``grant()`` does; the links are
planted as root, as that user could (they are its directories)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_supervisor.desktop import container
from llm_supervisor.desktop.secrets_store import DesktopFiles, ensure_password, read_password
from llm_supervisor.gateway import docker_mode
from llm_supervisor.gateway.options import GatewayOptions
from tests.local_user import LocalUser, another_user

SECRET = "TOPSECRETROOTFILE"


@pytest.fixture
def user() -> Iterator[LocalUser]:
    with another_user() as created:
        yield created


@pytest.fixture
def roots_file(tmp_path: Path) -> Path:
    path = tmp_path / "roots-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def _given_to(directory: Path, user: LocalUser) -> Path:
    directory.mkdir(parents=True, mode=0o700)
    os.chown(directory, user.uid, user.gid)
    return directory


def test_desktop_secrets_never_follow_planted_links(tmp_path: Path, roots_file: Path,
                                                    user: LocalUser) -> None:
    files = DesktopFiles(tmp_path / "state")
    desktop = _given_to(files.directory, user)
    files.password.symlink_to(roots_file)
    files.rfbauth.symlink_to(roots_file)

    assert read_password(files) is None  # GET /novnc does not show root's file
    password = ensure_password(files)
    assert SECRET not in password
    assert roots_file.read_text() == SECRET + "\n"
    assert stat.S_IMODE(roots_file.stat().st_mode) == 0o600
    for path in (files.password, files.rfbauth):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == (user.uid, user.gid)  # the unit user's, as its dir
    assert read_password(files) == password
    assert desktop.stat().st_uid == user.uid


def test_the_container_password_sits_in_a_root_only_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, roots_file: Path,
        user: LocalUser) -> None:
    state = tmp_path / "state"
    _given_to(state / "desktop", user)
    monkeypatch.setenv("LLM_SUPERVISOR_STATE_DIR", str(state))
    (state / "desktop" / "vnc-password").symlink_to(roots_file)
    assert container.write_secret() == 0
    directory = state / "desktop-container"
    st = directory.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
    secret = (directory / "vnc_password").lstat()
    assert stat.S_ISREG(secret.st_mode)
    assert (secret.st_uid, stat.S_IMODE(secret.st_mode)) == (container.IMAGE_UID, 0o400)
    assert SECRET not in (directory / "vnc_password").read_text()


def test_docker_gateway_config_never_goes_through_a_planted_link(tmp_path: Path,
                                                                 user: LocalUser) -> None:
    options = GatewayOptions(state_dir=tmp_path / "state")
    gateway = _given_to(options.directory, user)
    elsewhere = tmp_path / "roots-dir"
    elsewhere.mkdir(mode=0o700)
    (gateway / "docker").symlink_to(elsewhere)
    assert docker_mode.write([], options, {}) is True
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700
    assert list(elsewhere.iterdir()) == []
    docker = (gateway / "docker").lstat()
    assert stat.S_ISDIR(docker.st_mode) and stat.S_IMODE(docker.st_mode) == 0o755
    config = docker_mode.config_path(options)
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert docker_mode.write([], options, {}) is False  # unchanged: not rewritten
