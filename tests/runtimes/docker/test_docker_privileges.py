"""Containers run with least privilege (issue 9.5), checked on a real engine: every capability
dropped, no-new-privileges, and the image's non-root USER; a unit's AmbientCapabilities= is the
only capability added back."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.runtimes.docker.docker_fixtures import Daemon

pytestmark = pytest.mark.docker

USER_IMAGE = "llm-supervisor-test/busybox-user:1"


@pytest.fixture(scope="module")
def non_root_image(docker_client: Any, busybox_image: str) -> str:
    """Like our Dockerfiles: the image names a non-root USER (built locally, nothing pulled)."""
    dockerfile = f"FROM {busybox_image}\nUSER 10001:10001\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=USER_IMAGE, rm=True)
    return USER_IMAGE


def _unit(image: str, extra_service: str = "") -> str:
    return f"""[Unit]
Description=least privilege

[Service]
Runtime=docker
Restart=no
TimeoutStopSec=3
{extra_service}

[Container]
Image={image}
Command=sh -c 'echo started; exec sleep 1000'

[Install]
WantedBy=test.target
"""


def test_container_drops_all_capabilities_and_runs_as_the_images_user(
        daemon: Daemon, non_root_image: str) -> None:
    daemon.write_unit("least.service", _unit(non_root_image))
    daemon.write_unit("bind.service",
                      _unit(non_root_image, "AmbientCapabilities=CAP_NET_BIND_SERVICE"))
    daemon.start()
    daemon.wait_for("least", lambda s: s["state"] == "running", 60)
    daemon.wait_for("bind", lambda s: s["state"] == "running", 60)
    container = daemon.container_of("least.service")
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    code, out = container.exec_run(["id", "-u"])
    assert code == 0 and out.decode().strip() == "10001"
    code, out = container.exec_run(["cat", "/proc/1/status"])
    status = dict(line.split(":", 1) for line in out.decode().splitlines() if ":" in line)
    assert int(status["CapBnd"].strip(), 16) == 0  # nothing left to gain, even by root
    assert int(status["CapEff"].strip(), 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    bind = daemon.container_of("bind.service")
    bind.reload()
    assert bind.attrs["HostConfig"]["CapAdd"] == ["CAP_NET_BIND_SERVICE"]
    code, out = bind.exec_run(["cat", "/proc/1/status"])
    bounding = next(line for line in out.decode().splitlines() if line.startswith("CapBnd"))
    assert int(bounding.split(":")[1].strip(), 16) == 1 << 10  # CAP_NET_BIND_SERVICE only
