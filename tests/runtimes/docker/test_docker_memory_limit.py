"""``MemoryMax=`` / ``MemoryHigh=`` on the docker runtime, against a real engine: the container
gets ``mem_limit`` (and no swap beyond it) and ``mem_reservation``; a container that allocates
past the limit is killed by the kernel, Docker's OOMKilled record reaches the unit's log in
the process runtime's words, and the heal plugin counts it as out of memory. On a full disk only
this daemon's dangling images are removed."""

from __future__ import annotations

import contextlib
import io
import uuid
from typing import Any

import pytest

from llm_supervisor.heal import disk
from llm_supervisor.runtimes.docker import labels
from tests.runtimes.docker.docker_fixtures import Daemon

pytestmark = pytest.mark.docker

# tail keeps its input until it sees a newline; /dev/zero has none: 200 MiB held in memory.
HOG = "sh -c 'echo hogging; head -c 200m /dev/zero | tail'"


def test_container_past_memory_max_is_oom_killed_and_diagnosed(daemon: Daemon,
                                                               busybox_image: str) -> None:
    daemon.write_unit("hog.service", f"""[Service]
Runtime=docker
Restart=no
MemoryMax=32M
MemoryHigh=24M
[Container]
Image={busybox_image}
Command={HOG}
[Install]
WantedBy=test.target
""")
    daemon.start()
    status = daemon.wait_for("hog", lambda s: s["state"] == "failed", 60, "failed")
    log = daemon.unit_log("hog")
    assert "killed by the kernel's OOM killer: its container reached mem_limit" in log, log
    assert status["heal"]["kind"] == "oom"
    assert status["heal"]["line"] == "degraded: OOM under MemoryMax=32M (1× without a stable run)"
    assert status["memory_max"] == 32 << 20


def test_container_gets_mem_limit_and_reservation(daemon: Daemon, busybox_image: str) -> None:
    daemon.write_unit("idle.service", f"""[Service]
Runtime=docker
MemoryMax=64M
MemoryHigh=48M
[Container]
Image={busybox_image}
Command=sleep 300
[Install]
WantedBy=test.target
""")
    daemon.start()
    daemon.wait_for("idle", lambda s: s["state"] == "running", 60, "running")
    host_config = daemon.container_of("idle.service").attrs["HostConfig"]
    assert host_config["Memory"] == 64 << 20
    assert host_config["MemorySwap"] == 64 << 20
    assert host_config["MemoryReservation"] == 48 << 20


def test_full_disk_frees_only_our_dangling_images(docker_client: Any, busybox_image: str) -> None:
    """An older build of one of our tags (dangling, labelled with our owner id) is freed;
    another daemon's dangling image and our current image stay."""
    ours, theirs = f"heal-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"

    def build(owner: str, content: str) -> str:
        dockerfile = f"FROM {busybox_image}\nRUN echo {content} > /stamp\n".encode()
        image, _ = docker_client.images.build(
            fileobj=io.BytesIO(dockerfile), tag=f"llm-supervisord-test/heal-{owner}:1", rm=True,
            labels=labels.for_object(owner, "web.service"))
        return str(image.id)

    old_ours, new_ours = build(ours, "1"), build(ours, "2")
    old_theirs, new_theirs = build(theirs, "1"), build(theirs, "2")
    try:
        freed = disk.Freed()
        disk.reclaim_images(docker_client, ours, freed)
        assert [p for p in freed.paths if p.startswith("image ")] == \
            [f"image {old_ours[:19]}"]  # short_id: sha256: and 12 hex digits
        remaining = {image.id for image in docker_client.images.list(all=True)}
        assert old_ours not in remaining
        assert {new_ours, old_theirs, new_theirs} <= remaining
    finally:
        for image_id in (new_ours, old_theirs, new_theirs):
            with contextlib.suppress(Exception):
                docker_client.images.remove(image_id, force=True)
