"""A unit in a container through the daemon: its CPU and memory come from the engine's stats
API (status --json, monitor --containers), and monitor --network shows its Docker network."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import pytest

from tests.daemon_harness import Daemon, wait_for

pytestmark = pytest.mark.slow


def test_container_unit_resources_and_network(cli_daemon: Daemon, docker_client: Any,
                                              busybox_image: str):
    client, image = docker_client, busybox_image
    network = f"llm-cli-test-{uuid.uuid4().hex[:8]}"
    cli_daemon.write_unit("burner.service", (
        "[Service]\nRuntime=docker\nTimeoutStopSec=3\n"
        f"[Container]\nImage={image}\nCommand=sh -c 'yes > /dev/null'\nNetwork={network}\n"
        "[Install]\nWantedBy=stack.target\n"))
    try:
        cli_daemon.start()
        cli_daemon.wait_state("burner", "running", timeout=60)

        def measured() -> dict | None:
            units = json.loads(cli_daemon.ctl("status", "--json", check=True).stdout)
            burner = next(u for u in units if u["name"] == "burner")
            return burner if burner["cpu_percent"] and burner["cpu_percent"] > 5 and \
                burner["memory_bytes"] else None

        burner = wait_for(measured, 60, "the container's stats", interval=0.5)
        assert burner["runtime"] == "docker" and isinstance(burner["memory_bytes"], int)
        containers = cli_daemon.ctl("monitor", "--containers", check=True).stdout
        row = next(line for line in containers.splitlines() if line.startswith("burner "))
        assert "docker" in row and "%" in row
        view = cli_daemon.ctl("monitor", "--network", check=True).stdout
        line = next((x for x in view.splitlines() if x.startswith(network)), None)
        assert line is not None and "burner" in line and "running" in line, view
    finally:
        cli_daemon.stop()
        for container in client.containers.list(all=True, filters={"network": network}):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        for found in client.networks.list(names=[network]):
            with contextlib.suppress(Exception):
                found.remove()
