"""The suite's plan (tests/parallel_groups.py) as pytest itself collects it: whatever uses the
machine's Docker engine is marked ``docker`` (make test runs those apart, in one process), and
the slowest files come first in the collection order workers take work in."""

from __future__ import annotations

import subprocess
import sys

from tests.daemon_harness import PROJECT_DIR

FILES = ["tests/core/test_atomic_writes.py", "tests/replicas/test_replicas_config.py",
         "tests/cli/test_cli_docker_views.py", "tests/runtimes/docker/test_docker_runtime.py"]


def collect(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co",
                           "-q", *args, *FILES], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_docker_engine_users_form_one_group_and_slow_files_come_first() -> None:
    order = [nodeid.split("::")[0] for nodeid in collect()]
    files = list(dict.fromkeys(order))
    assert files == ["tests/runtimes/docker/test_docker_runtime.py",
                     "tests/replicas/test_replicas_config.py",
                     "tests/core/test_atomic_writes.py", "tests/cli/test_cli_docker_views.py"], files
    grouped = collect("-m", "docker")
    grouped_files = {nodeid.split("::")[0] for nodeid in grouped}
    assert grouped_files == {"tests/runtimes/docker/test_docker_runtime.py",
                             "tests/cli/test_cli_docker_views.py"}, grouped
    assert len([n for n in order if "test_docker_runtime" in n]) >= len(
        [n for n in grouped if "test_docker_runtime" in n]) > 0
