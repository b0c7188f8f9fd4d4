"""``llm-supervisorctl logs --all [-f]``: every unit's output merged by time, from the daemon's
log feed (``GET /logs``, the dashboard plugin). A daemon without it gets each unit's tail in
turn, and ``-f`` follows every unit at once (arrival order is time order)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from llm_supervisor.cli.client import ControlClient, ControlError


def _fallback_tail(client: ControlClient, count: int) -> list[str]:
    lines = []
    for unit in client.get("/units"):
        text = client.request("GET", f"/units/{unit['name']}/logs", params={"tail": count}).text
        lines.extend(f"{unit['name']:<16} | {line}" for line in text.splitlines())
    return lines[-count:] if count else []


def recent_lines(client: ControlClient, count: int) -> list[str]:
    try:
        return client.request("GET", "/logs", params={"tail": count}).text.splitlines()
    except ControlError as exc:
        if exc.status != 404:
            raise
        return _fallback_tail(client, count)


def _follow_each(client: ControlClient, count: int) -> Iterator[str]:
    lines: queue.Queue[str] = queue.Queue()

    def follow(name: str) -> None:
        for line in ControlClient(client.socket).stream_lines(
                f"/units/{name}/logs", {"tail": count, "follow": 1}):
            lines.put(f"{name:<16} | {line}")

    for unit in client.get("/units"):
        threading.Thread(target=follow, args=(unit["name"],), daemon=True).start()
    while True:
        yield lines.get()


def follow_lines(client: ControlClient, count: int) -> Iterator[str]:
    try:
        yield from client.stream_lines("/logs", {"tail": count, "follow": 1})
    except ControlError as exc:
        if exc.status != 404:
            raise
        yield from _follow_each(client, count)
