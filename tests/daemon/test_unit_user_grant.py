"""Root handing ``STATE_DIR/{desktop,gateway,home}`` and the model dir to the unit user
(issue 18, item 1), with a real second local user playing the unit user:

- a process of that user swapping a directory of its tree for a link to a root-owned directory,
  as fast as it can, never gets root to chown anything outside the tree — neither through
  ``grant()`` (which now stops the account's processes before it walks) nor through the
  descriptor walk itself (``core.nofollow.own_tree``) while the swapper keeps running;
- every process of the account is stopped before a walk;
- a start where ownership is already right does not walk the trees again.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from llm_supervisor.core import nofollow
from llm_supervisor.daemon import unit_user
from tests.daemon_harness import wait_for
from tests.local_user import SYSTEM_PYTHON, LocalUser, another_user

FILES = 40

# As the unit user: swap desktop/a between its real directory and a link to the victim
# directory until the stop file appears (or 30 s); print how many swaps it made.
SWAPPER = r"""
import os, sys, time
desktop, victim, stop = sys.argv[1:4]
a, real = os.path.join(desktop, "a"), os.path.join(desktop, "a.real")
swaps, deadline = 0, time.monotonic() + 30
print("ready", flush=True)
while not os.path.exists(stop) and time.monotonic() < deadline:
    os.rename(a, real)
    os.symlink(victim, a)
    os.unlink(a)
    os.rename(real, a)
    swaps += 1
print(swaps, flush=True)
"""


@pytest.fixture
def user() -> Iterator[LocalUser]:
    with another_user() as created:
        yield created


@pytest.fixture
def base() -> Iterator[Path]:
    """Outside pytest's 0700 temp dirs, so the second user can reach its directories."""
    path = Path(tempfile.mkdtemp(prefix="llmt-grant-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _settings(base: Path) -> SimpleNamespace:
    state = base / "state"
    state.mkdir(exist_ok=True)
    return SimpleNamespace(state_dir=state, effective_model_path=state / "models" / "default")


def _victim(base: Path) -> Path:
    victim = base / "victim"
    victim.mkdir(mode=0o755)
    for index in range(FILES):
        (victim / f"f{index}").write_text("root's\n")
    return victim


def _populate(desktop: Path, account: pwd.struct_passwd) -> None:
    (desktop / "a").mkdir()
    for index in range(FILES):
        (desktop / "a" / f"f{index}").write_text("mine\n")
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(desktop)],
                   check=True)


def _start_swapper(user: LocalUser, desktop: Path, victim: Path, stop: Path
                   ) -> subprocess.Popen[str]:
    swapper = subprocess.Popen(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
                                "--clear-groups", SYSTEM_PYTHON, "-I", "-c", SWAPPER,
                                str(desktop), str(victim), str(stop)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    assert swapper.stdout is not None
    assert swapper.stdout.readline().strip() == "ready", swapper.stderr.read()
    return swapper


def _victims_untouched(victim: Path) -> None:
    owners = {(p.name, p.stat().st_uid) for p in victim.iterdir()}
    assert owners == {(f"f{i}", 0) for i in range(FILES)}, "root chowned a file outside the tree"
    assert victim.stat().st_uid == 0


def test_grant_never_chowns_through_a_swapped_directory(user: LocalUser, base: Path) -> None:
    settings = _settings(base)
    account = pwd.getpwnam(user.name)
    unit_user.grant(settings, account)
    _populate(settings.state_dir / "desktop", account)
    victim = _victim(base)
    swapper = _start_swapper(user, settings.state_dir / "desktop", victim, base / "stop")
    try:
        for _ in range(60):  # a start that must walk (first grant, or the account changed)
            (settings.state_dir / unit_user.GRANT_MARKER).unlink(missing_ok=True)
            unit_user.grant(settings, account)
        _victims_untouched(victim)
    finally:
        (base / "stop").touch()
        swapper.kill()
        swapper.wait()


def test_the_descriptor_walk_holds_while_the_swapper_runs(user: LocalUser, base: Path) -> None:
    """The walk alone, with the unit user's process left running (grant() would stop it)."""
    account = pwd.getpwnam(user.name)
    desktop = base / "desktop"
    desktop.mkdir(mode=0o700)
    _populate(desktop, account)
    victim = _victim(base)
    stop = base / "stop"
    swapper = _start_swapper(user, desktop, victim, stop)
    try:
        deadline = time.monotonic() + 8
        walks = 0
        while time.monotonic() < deadline:
            fd = nofollow.open_dir_path(desktop)
            try:
                nofollow.own_tree(fd, (account.pw_uid, account.pw_gid))
            finally:
                os.close(fd)
            walks += 1
        stop.touch()
        out, err = swapper.communicate(timeout=30)
        assert int(out.split()[-1]) > walks, (out, err)  # it really raced every walk
        _victims_untouched(victim)
    finally:
        stop.touch()
        swapper.kill()
        swapper.wait()


def test_grant_stops_the_accounts_processes_before_walking(user: LocalUser, base: Path) -> None:
    settings = _settings(base)
    leftover = subprocess.Popen(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
                                 "--clear-groups", "sleep", "1000"], cwd="/")
    try:
        wait_for(lambda: os.stat(f"/proc/{leftover.pid}").st_uid == user.uid, 10,
                 "the leftover process to run as the unit user")
        assert leftover.poll() is None
        unit_user.grant(settings, pwd.getpwnam(user.name))
        assert leftover.poll() is not None  # killed (and reaped) before grant() returned
    finally:
        leftover.kill()
        leftover.wait()


def test_a_start_with_ownership_already_right_does_not_walk(
        user: LocalUser, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(base)
    account = pwd.getpwnam(user.name)
    walked: list[int] = []
    real_walk = nofollow.own_tree

    def counting(fd: int, owner: tuple[int, int]) -> int:
        walked.append(fd)
        return real_walk(fd, owner)

    monkeypatch.setattr(nofollow, "own_tree", counting)
    owned = unit_user.grant(settings, account)
    assert len(walked) == 4  # desktop, gateway, home, the model dir
    assert all(path.stat().st_uid == account.pw_uid for path in owned)
    walked.clear()
    unit_user.grant(settings, account)
    assert walked == []
    # the record names another account (UNIT_USER changed): walk again
    marker = settings.state_dir / unit_user.GRANT_MARKER
    marker.write_text('{"uid": 1, "gid": 1}')
    unit_user.grant(settings, account)
    assert len(walked) == 4
