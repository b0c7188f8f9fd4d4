"""The dashboard's live streams (issue 18, item 14), against a real daemon: every open page gets
the same snapshot, built once per interval (its ``taken`` stamp is shared), not one poll of
process stats per stream; and streams past DASHBOARD_MAX_STREAMS get a 503 with a JSON reason
instead of another loop of work on the daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import Daemon, free_port, wait_for
from tests.dashboard.dashboard_helpers import TALKER, wait_dashboard

MAX_STREAMS = 3


def _snapshots(lines: Iterator[str]) -> Iterator[dict]:
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "snapshot":
            yield json.loads(line[len("data: "):])


@pytest.fixture
def daemon_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    daemon = Daemon(tmp_path, {"DASHBOARD_PORT": str(port), "DASHBOARD_MAX_STREAMS":
                               str(MAX_STREAMS)})
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit("alpha.service", TALKER.format(tag="alpha"))
    daemon.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_dashboard(url)
        daemon.wait_state("alpha", "running")
        yield url
    finally:
        daemon.stop()


def test_streams_share_one_snapshot_and_are_capped(daemon_url: str) -> None:
    with ExitStack() as stack:
        streams = []
        for _ in range(MAX_STREAMS):
            client = stack.enter_context(httpx.Client(timeout=30))
            response = stack.enter_context(client.stream("GET", daemon_url + "/api/events"))
            assert response.status_code == 200
            streams.append(_snapshots(response.iter_lines()))

        with httpx.Client(timeout=10) as client, \
                client.stream("GET", daemon_url + "/api/events") as extra:
            assert extra.status_code == 503
            assert "DASHBOARD_MAX_STREAMS" in json.loads(extra.read())["error"]["message"]

        first = [next(stream) for stream in streams]
        assert all(snapshot["units"] and snapshot["logs"] is not None for snapshot in first)
        # the last stream opened: its next two periodic snapshots ...
        last = [next(streams[-1])["taken"] for _ in range(2)]
        # ... are the very ones the earlier streams got (same build, not one per stream)
        for stream in streams[:-1]:
            seen = []
            while not seen or seen[-1] < last[-1]:
                seen.append(next(stream)["taken"])
            assert set(last) <= set(seen), (last, seen)

    # closed streams free their places (as soon as the daemon sees the connections gone)
    def reopened() -> bool:
        with httpx.Client(timeout=30) as client, \
                client.stream("GET", daemon_url + "/api/events") as response:
            return response.status_code == 200 and \
                bool(next(_snapshots(response.iter_lines()))["units"])

    wait_for(reopened, 10, "a stream after the others closed")
