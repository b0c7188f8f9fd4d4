"""Shared pytest fixtures. Model fixtures live in model_fixtures.py (a pytest plugin); the order
and grouping of a parallel run (``pytest -n 2 --dist loadgroup``) in parallel_groups.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon

pytest_plugins = ["tests.model_fixtures", "tests.docker_engine", "tests.parallel_groups"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A real daemon in a temporary state dir with an empty ``stack.target``."""
    instance = Daemon(tmp_path)
    instance.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    yield instance
    instance.stop()
