"""Pytest plugin: the order the suite runs in when ``make test`` spreads it over several
workers (pytest-xdist), and which tests use the machine's Docker engine.

The tests already coexist with other test runs on the same machine (free ports, private state
dirs, per-run temporary folders), so most of them are independent. The ones that use the Docker
engine share it (where none runs, a session fixture starts a private ``dockerd``; the swarm
tests join the engine to a swarm and leave it), so they are marked ``docker`` and ``make test``
runs them apart, in one process (``-m docker``) after the rest (``-m "not docker"``). xdist's
``--dist loadgroup`` would be the natural tool, but with pytest 9 its group suffix never
reaches the node ids, so it spread the group over both workers.

The longest files go first (collection order is the order workers take work in): a long test
that starts last makes every other worker wait for it at the end.
"""

from __future__ import annotations

import pytest

# Modules that talk to the engine without the docker_client fixture.
DOCKER_MODULES = ("tests/cli/test_cli_docker_views.py", "tests/cli/test_cli_resources.py::"
                  "test_container_stats_through_the_engine")
# Slowest first (test-artifacts/junit.xml of full runs): the Docker files (image builds), the
# rolling-replica tests (~50 s each), the stacks behind start --wait and monitor, the e2e suites.
SLOW_FIRST = (
    "tests/runtimes/docker/",
    "tests/export/test_export_swarm.py",
    "tests/replicas/",
    "tests/heal/test_heal_stall.py",
    "tests/dashboard/test_dashboard_charts.py",
    "tests/desktop/test_test_page_in_firefox.py",
    "tests/cli/test_cli_start_wait.py",
    "tests/cli/test_cli_monitor_stack.py",
    "tests/desktop/test_desktop_e2e.py",
    "tests/gateway/test_gateway_e2e.py",
    "tests/models/",
    "tests/repair/test_repair_e2e.py",
    "tests/model_server/",
)


def needs_docker_engine(item: pytest.Item) -> bool:
    return ("docker_client" in getattr(item, "fixturenames", ())
            or item.get_closest_marker("docker") is not None
            or item.nodeid.startswith(DOCKER_MODULES))


def rank(item: pytest.Item) -> int:
    for index, prefix in enumerate(SLOW_FIRST):
        if item.nodeid.startswith(prefix):
            return index
    return len(SLOW_FIRST)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Marked as each test is collected, before ``-m`` selects by marker."""
    if needs_docker_engine(item):
        item.add_marker(pytest.mark.docker)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=rank)  # stable: within a rank, the usual file order
