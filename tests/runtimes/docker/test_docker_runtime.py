"""The docker runtime through the real daemon and a real engine: health, restarts by us (not by
Docker), logs, adoption after a daemon restart, reset/purge ownership, clear start errors."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from llm_supervisor.runtimes.docker import labels
from tests.model_fixtures import free_port
from tests.runtimes.docker.docker_fixtures import Daemon

pytestmark = pytest.mark.docker

WEB_COMMAND = ("sh -c 'mkdir -p /www && echo ok > /www/ok && echo web starting "
               "&& exec httpd -f -vv -p 8000 -h /www'")


def web_unit(image: str, port: int, *, extra_service: str = "", extra_container: str = "",
             restart: str = "always", health: bool = True) -> str:
    health_section = (
        f"[Health]\nCheck=http://127.0.0.1:{port}/ok\nInterval=0.3\nTimeout=1\nRetries=2\n"
        if health else "")
    return f"""[Unit]
Description=busybox web server

[Service]
Runtime=docker
Restart={restart}
RestartSec=0.1
RestartMaxDelaySec=1
StartLimitBurst=20
TimeoutStopSec=3
{extra_service}

{health_section}
[Container]
Image={image}
Command={WEB_COMMAND}
Ports=127.0.0.1:{port}:8000
{extra_container}

[Install]
WantedBy=test.target
"""


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ok", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_start_with_health_becomes_healthy_with_labels_and_logs(daemon: Daemon,
                                                                 busybox_image: str) -> None:
    port = free_port()
    # A network of its own: a default llm-network may exist already (the user's stack, another
    # daemon's test), and then it is used as it is, not created with our labels.
    network_name = f"lsd-test-net-{uuid.uuid4().hex[:8]}"
    daemon.write_unit("web.service", web_unit(busybox_image, port,
                                              extra_container=f"Network={network_name}"))
    daemon.start()
    status = daemon.wait_healthy("web")
    assert status["runtime"] == "docker"
    container = daemon.container_of("web.service")
    assert container.labels[labels.PROJECT] == "llm-supervisord"
    assert container.labels[labels.UNIT] == "web.service"
    assert len(container.labels[labels.CONFIG_HASH]) == 16
    host_config = container.attrs["HostConfig"]
    assert host_config["Init"] is True
    assert host_config["RestartPolicy"]["Name"] in ("", "no"), "Docker must not restart it"
    assert status["pid"] == container.attrs["State"]["Pid"]
    # The network was created for us, with our labels.
    network_name = f"{network_name}-{daemon.owner}"  # named per stack (issue 18 item 8)
    network = daemon.docker.networks.get(network_name)
    assert labels.owned_by(network.attrs["Labels"], daemon.owner)
    aliases = container.attrs["NetworkSettings"]["Networks"][network_name]["Aliases"]
    assert "web" in aliases, "reachable by its unit name on the network"

    assert "web starting" in daemon.unit_log("web")
    # logs -f: a request made after following starts shows up as a new httpd log line.
    lines: queue.Queue[str] = queue.Queue()

    def follow() -> None:
        for line in daemon.ctl.stream_lines("/units/web/logs", params={"tail": 0, "follow": 1}):
            lines.put(line)

    threading.Thread(target=follow, daemon=True).start()
    marker = f"/marker-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 15
    seen = False
    while not seen and time.monotonic() < deadline:
        httpx.get(f"http://127.0.0.1:{port}{marker}", timeout=2)
        with contextlib.suppress(queue.Empty):
            poll_until = time.monotonic() + 1
            while not seen and time.monotonic() < poll_until:
                seen = marker in lines.get(timeout=0.5)
    assert seen, "followed log did not show the request"

    assert daemon.stop() == 0
    assert daemon.containers("web.service") == [], "stopped containers are removed"


def test_docker_kill_is_restarted_by_us(daemon: Daemon, busybox_image: str) -> None:
    port = free_port()
    daemon.write_unit("web.service", web_unit(busybox_image, port))
    daemon.start()
    daemon.wait_healthy("web")
    first = daemon.container_of("web.service")
    killed_at = time.monotonic()
    first.kill()  # SIGKILL, as `docker kill`
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (answers(port) and first.id not in
                                               [c.id for c in daemon.containers("web.service")]):
        time.sleep(0.02)
    recovery = time.monotonic() - killed_at
    status = daemon.wait_healthy("web")
    assert status["restarts"] >= 1
    assert status["last_exit"]["signal"] == 9, status["last_exit"]
    second = daemon.container_of("web.service")
    assert second.id != first.id
    print(f"\ndocker kill -> answering again: {recovery:.3f}s")
    assert recovery < 10


def test_unhealthy_container_is_restarted(daemon: Daemon, busybox_image: str) -> None:
    port = free_port()
    daemon.write_unit("web.service", web_unit(busybox_image, port))
    daemon.start()
    daemon.wait_healthy("web")
    first = daemon.container_of("web.service")
    first.exec_run(["rm", "/www/ok"])  # the process lives on, but the check now gets 404
    daemon.wait_for("web", lambda s: s["restarts"] >= 1, 20, "a restart")
    status = daemon.wait_healthy("web")
    assert '"reason": "unhealthy: 2 failed checks' in daemon.log()
    assert daemon.container_of("web.service").id != first.id
    assert status["state"] == "running"


def test_daemon_restart_readopts_unchanged_and_recreates_changed(
        daemon: Daemon, busybox_image: str) -> None:
    port = free_port()
    daemon.write_unit("web.service", web_unit(busybox_image, port))
    daemon.start()
    daemon.wait_healthy("web")
    first = daemon.container_of("web.service")

    daemon.kill9()
    assert answers(port), "the container outlives a SIGKILLed daemon"
    daemon.start()
    daemon.wait_healthy("web")
    assert daemon.container_of("web.service").id == first.id, "unchanged unit: re-adopted"
    assert "re-adopting running container" in daemon.unit_log("web", 400)
    # The adopted container is watched like a fresh one: killing it restarts it.
    first.kill()
    daemon.wait_for("web", lambda s: s["restarts"] >= 1, 20, "restart of the adopted container")
    second = daemon.wait_healthy("web") and daemon.container_of("web.service")
    assert second.id != first.id

    daemon.kill9()
    daemon.write_unit("web.service", web_unit(busybox_image, port,
                                              extra_service="Environment=CHANGED=1"))
    daemon.start()
    daemon.wait_healthy("web")
    third = daemon.container_of("web.service")
    assert third.id != second.id, "changed unit: recreated"
    assert "CHANGED=1" in third.attrs["Config"]["Env"]
    ids = [c.id for c in daemon.containers("web.service")]
    assert ids == [third.id], "the old container was removed"


def test_reset_and_purge_remove_only_what_we_own(daemon: Daemon, busybox_image: str,
                                                 tmp_path: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    volume, network = f"lsd-test-vol-{suffix}", f"lsd-test-net-{suffix}"
    port = free_port()
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE=registry.invalid/none\nFROM ${BASE_IMAGE}\nRUN echo built > /built\n")
    daemon.write_unit("web.service", web_unit(
        busybox_image, port,
        extra_container=f"Volumes={volume}:/data\nNetwork={network}\nBuild={context}\n"
                        "Image=\n"))
    daemon.env_extra["BASE_IMAGE"] = busybox_image
    foreign = daemon.docker.containers.run(busybox_image, ["sleep", "300"], detach=True,
                                           init=True, name=f"foreign-{suffix}")
    try:
        daemon.start()
        daemon.wait_healthy("web", timeout=60)
        first = daemon.container_of("web.service")
        assert first.exec_run(["cat", "/built"]).output.strip() == b"built", "built from BASE_IMAGE"
        image = daemon.docker.images.get(first.image.id)
        assert labels.owned_by(image.labels, daemon.owner)
        assert "building image" in daemon.unit_log("web", 400)

        result = daemon.ctl.post("/reset")
        removed = " ".join(result["removed"])
        # The unit's container went when the unit stopped; the network and image went too.
        assert f"network {network}" in removed and "image llm-supervisord/web:" in removed
        assert first.id not in [c.id for c in daemon.docker.containers.list(all=True)]
        daemon.wait_healthy("web", timeout=60)
        assert daemon.container_of("web.service").id != first.id
        foreign.reload()
        assert foreign.status == "running", "a foreign container from the same image survives"

        daemon.ctl.post("/shutdown", params={"purge": "1"})
        assert daemon.proc is not None
        daemon.proc.wait(60)
        mine = {"label": labels.owner_filter(daemon.owner)}
        assert daemon.docker.containers.list(all=True, filters=mine) == []
        assert daemon.docker.networks.list(filters=mine) == []
        assert daemon.docker.volumes.list(filters=mine) == []
        assert daemon.docker.images.list(filters=mine) == []
        foreign.reload()
        assert foreign.status == "running"
        daemon.docker.images.get(busybox_image)  # the foreign image is untouched
    finally:
        foreign.remove(force=True)


def test_port_conflict_gives_a_clear_error(daemon: Daemon, busybox_image: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        daemon.write_unit("web.service", web_unit(busybox_image, port, restart="no"))
        daemon.start()
        status = daemon.wait_for("web", lambda s: s["state"] == "failed", 20, "failed")
    assert f"port {port} is already in use" in status["reason"], status["reason"]
    assert daemon.containers("web.service") == [], "the half-created container is removed"


def test_missing_image_says_how_to_build_it(daemon: Daemon, busybox_image: str) -> None:
    daemon.write_unit("web.service", web_unit("llm-supervisord-test/missing:1", free_port(),
                                              restart="no"))
    daemon.start()
    status = daemon.wait_for("web", lambda s: s["state"] == "failed", 20, "failed")
    assert "not available locally" in status["reason"]
    assert "docker build -t llm-supervisord-test/missing:1" in status["reason"]


def test_foreign_container_with_our_name_is_not_touched(daemon: Daemon,
                                                        busybox_image: str) -> None:
    port = free_port()
    daemon.write_unit("web.service", web_unit(busybox_image, port, restart="no"))
    name = f"llm-supervisord-web-{daemon.owner[:6]}"
    squatter = daemon.docker.containers.run(busybox_image, ["sleep", "300"], detach=True,
                                            init=True, name=name)
    try:
        daemon.start()
        status = daemon.wait_for("web", lambda s: s["state"] == "failed", 20, "failed")
        assert "was not created by this llm-supervisord" in status["reason"]
        squatter.reload()
        assert squatter.status == "running"
    finally:
        squatter.remove(force=True)


def test_image_healthcheck_is_surfaced_and_unhealthy_restarts_without_our_check(
        daemon: Daemon, busybox_image: str, tmp_path: Any) -> None:
    context = tmp_path / "hc"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "HEALTHCHECK --interval=500ms --timeout=1s --retries=1 CMD test -f /www/ok\n")
    port = free_port()
    daemon.write_unit("web.service", web_unit(busybox_image, port, health=False,
                                              extra_container=f"Build={context}\nImage=\n"))
    daemon.env_extra["BASE_IMAGE"] = busybox_image
    daemon.start()
    daemon.wait_for("web", lambda s: "docker health: healthy" in "\n".join(s.get("log_tail", [])),
                    30, "docker health: healthy in the log")
    first = daemon.container_of("web.service")
    first.exec_run(["rm", "/www/ok"])
    daemon.wait_for("web", lambda s: s["restarts"] >= 1 and s["state"] == "running", 30,
                    "restart after Docker reported unhealthy")
    assert "reports unhealthy" in daemon.unit_log("web", 400)
    assert daemon.container_of("web.service").id != first.id
