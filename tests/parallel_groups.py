"""Pytest plugin: what may run side by side when ``make test`` runs the suite on several workers
(pytest-xdist, ``--dist loadgroup``), and what starts first.

The tests already coexist with other test runs on the same machine (free ports, private state
dirs, per-run temporary folders), so most of them are independent. What is shared machine-wide
goes into one ``xdist_group`` and so runs on one worker, in order:

- ``docker``: the Docker engine. Where none runs, the docker tests' session fixture starts a
  private ``dockerd`` and stops it at the end; two workers would each try. The swarm tests also
  join the engine to a swarm and leave it.

The longest groups go first (collection order is the order workers take work in): a long test
that starts last makes every other worker wait for it at the end.
"""

from __future__ import annotations

import pytest

DOCKER_GROUP = "docker"
# Modules that talk to the engine without the docker_client fixture (they skip without one).
DOCKER_MODULES = ("tests/cli/test_cli_docker_views.py", "tests/cli/test_cli_resources.py")
# Slowest first (test-artifacts/junit.xml of full runs): the Docker group (image builds), the
# rolling-replica tests (~50 s each), the stacks behind start --wait and monitor, the e2e suites.
SLOW_FIRST = (
    "tests/runtimes/docker/",
    "tests/export/test_export_swarm.py",
    "tests/replicas/",
    "tests/cli/test_cli_start_wait.py",
    "tests/cli/test_cli_monitor_stack.py",
    "tests/desktop/test_desktop_e2e.py",
    "tests/gateway/test_gateway_e2e.py",
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


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_docker_engine(item):
            item.add_marker(pytest.mark.xdist_group(DOCKER_GROUP))
    items.sort(key=rank)  # stable: within a rank, the usual file order
