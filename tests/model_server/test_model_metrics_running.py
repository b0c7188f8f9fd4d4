"""``llm_requests_running`` goes back to 0 once the batch empties (on both engines).

It used to be set only on the event loop when a request was released, from a count the worker
thread updated just *after* handing over the final event: the loop often read the old count,
and nothing set the gauge again, so an idle server reported requests running (a drain waiting
for 0 then waited its whole timeout)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.model_fixtures import ModelServer

ROUNDS = 3


def _gauges(server: ModelServer) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("llm_requests_running ", "llm_batch_current_size ", "llm_queue_size ")):
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def _generate(server: ModelServer, n: int) -> None:
    body = {"prompt": f"count {n}", "max_length": 4 + 8 * n, "temperature": 0}
    r = httpx.post(f"{server.url}/api/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text


def test_running_gauge_is_zero_after_requests_finish(api_server: ModelServer) -> None:
    seen_busy = False
    for _ in range(ROUNDS):
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(_generate, api_server, n) for n in range(4)]
            while not all(f.done() for f in futures):  # it does count while they run
                seen_busy = seen_busy or _gauges(api_server)["llm_requests_running"] > 0
                time.sleep(0.02)
            for f in futures:
                f.result()
        # Every response is complete: the gauges may lag by one worker step, never more.
        deadline = time.monotonic() + 5.0
        gauges = _gauges(api_server)
        while gauges["llm_requests_running"] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            gauges = _gauges(api_server)
        assert gauges == {"llm_requests_running": 0.0, "llm_batch_current_size": 0.0,
                          "llm_queue_size": 0.0}, gauges
    assert seen_busy  # the gauge is not simply stuck at 0
