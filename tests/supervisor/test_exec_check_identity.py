"""``Check=exec:`` runs with the unit's identity (issue 18, item 6): as the unit's ``User=``,
never as the root daemon, so a check that reads paths the unit user controls cannot be turned
against root. Real root daemon, real second local user, real check program."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon
from tests.local_user import LocalUser, another_user


@pytest.fixture
def user() -> Iterator[LocalUser]:
    with another_user() as created:
        yield created


def test_exec_check_runs_as_the_units_user(user: LocalUser, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    # Healthy only when the check itself runs as the unit's user.
    daemon.write_unit("checked.service", (
        f"[Service]\nExecStart=/bin/sleep 1000\nUser={user.name}\n[Health]\n"
        f"Check=exec:/bin/sh -c 'id -u; test \"$(id -u)\" = {user.uid}'\n"
        "Interval=1\nTimeout=10\nRetries=100\n[Install]\nWantedBy=stack.target\n"))
    daemon.start()
    try:
        unit = daemon.wait_state("checked", "running", timeout=60, health="healthy")
        assert unit["health_detail"] == f"exit 0: {user.uid}"
    finally:
        daemon.stop()
