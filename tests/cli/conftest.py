"""Fixtures for the CLI tests: a real daemon in a subprocess (tests/daemon_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon


@pytest.fixture
def cli_daemon(tmp_path: Path) -> Iterator[Daemon]:
    instance = Daemon(tmp_path)
    instance.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    yield instance
    instance.stop()
