"""Two daemons on one Docker engine never share a network, its aliases or a named volume
(issue 18, item 8): both run the same unit (default network, a named volume, the same unit
name), and each gets ``llm-network-<owner>`` and ``<volume>-<owner>``; one stack cannot resolve
the other's unit name nor read what it wrote. Real engine, real containers."""

from __future__ import annotations

from collections.abc import Callable

from llm_supervisor.runtimes.docker.spec import stack_name
from tests.runtimes.docker.docker_fixtures import Daemon


def _unit(image: str, tag: str) -> str:
    return f"""[Service]
Runtime=docker
Restart=no
TimeoutStopSec=2

[Container]
Image={image}
Command=sh -c 'echo {tag} > /data/who; exec sleep 1000'
Volumes=lsd-shared-data:/data

[Install]
WantedBy=test.target
"""


def test_two_stacks_on_one_engine_share_no_network_alias_or_volume(
        daemon_factory: Callable[[], Daemon], busybox_image: str) -> None:
    first, second = daemon_factory(), daemon_factory()
    for daemon, tag in ((first, "first"), (second, "second")):
        daemon.write_unit("web.service", _unit(busybox_image, tag))
        daemon.start()
    for daemon in (first, second):
        daemon.wait_for("web", lambda s: s["state"] == "running", 60)
    try:
        a, b = first.container_of("web.service"), second.container_of("web.service")
        networks = [set(c.attrs["NetworkSettings"]["Networks"]) for c in (a, b)]
        assert networks == [{f"llm-network-{first.owner}"}, {f"llm-network-{second.owner}"}]
        volumes = [{m["Name"] for m in c.attrs["Mounts"] if m["Type"] == "volume"} for c in (a, b)]
        assert volumes == [{stack_name("lsd-shared-data", first.owner)},
                           {stack_name("lsd-shared-data", second.owner)}]
        assert a.exec_run("cat /data/who").output.decode().strip() == "first"
        assert b.exec_run("cat /data/who").output.decode().strip() == "second"
        # the unit name "web" is an alias on each stack's own network only: a resolves itself
        own = a.exec_run(["nslookup", "web"]).output.decode()
        b_address = b.attrs["NetworkSettings"]["Networks"][f"llm-network-{second.owner}"][
            "IPAddress"]
        assert b_address not in own, own
    finally:
        for daemon in (first, second):
            daemon.stop()
        for daemon in (first, second):
            for volume in first.docker.volumes.list(
                    filters={"name": stack_name("lsd-shared-data", daemon.owner)}):
                volume.remove(force=True)
