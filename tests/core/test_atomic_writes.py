"""The one atomic-write helper (llm_supervisor.core.fsutil) behind the secrets and gateway files."""

from __future__ import annotations

import stat
from pathlib import Path

from llm_supervisor.desktop.secrets_store import write_private
from llm_supervisor.gateway.files import write_if_changed


def test_private_file_is_0600_and_replaced_whole(tmp_path: Path) -> None:
    secret = tmp_path / "vnc-password"
    secret.write_text("old")
    secret.chmod(0o644)
    write_private(secret, b"new secret\n")
    assert secret.read_bytes() == b"new secret\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["vnc-password"]  # no temporary left


def test_gateway_file_is_staged_outside_the_watched_directory(tmp_path: Path) -> None:
    watched, staging = tmp_path / "dynamic", tmp_path / "staging"
    target = watched / "routes.yml"
    assert write_if_changed(target, "a: 1\n", staging) is True
    assert write_if_changed(target, "a: 1\n", staging) is False  # unchanged: not rewritten
    assert target.read_text() == "a: 1\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in watched.iterdir()] == ["routes.yml"]
    assert list(staging.iterdir()) == []
