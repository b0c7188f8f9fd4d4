"""The dashboard's pictures against a real stack: the shipped model-service (llama.cpp on the
offline SmolLM2 GGUF) behind the real Caddy gateway, a worker unit and a unit for the other
runtime, under real load (concurrent /api/generate requests through the gateway). Proves, in a
real headless Chromium, that

- the daemon's time series fill (requests/s, tokens/s, p50/p95 latency, queue for the model;
  CPU and memory per unit) and the page draws them with the vendored uPlot (no CDN);
- a unit killed with SIGKILL and restarted shows in the timeline (exit with its reason, then
  restart) and as marks on its chart;
- clicking a unit shows its own log with levels; clicking the gateway shows its JSON access lines
  parsed into method, path, status and duration;
- a unit skipped because the other runtime runs it is folded away (a count and a toggle).

The sampling interval is shortened (DASHBOARD_SAMPLE_S=0.5) instead of waiting an hour. The
screenshots go to test-artifacts/ (dashboard-charts.png, dashboard-timeline.png).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cli.cli_stack import StackDaemon, stack_env
from tests.daemon_harness import wait_for
from tests.dashboard.dashboard_helpers import ARTIFACTS
from tests.model_fixtures import build_gguf_model

pytestmark = pytest.mark.slow

WORKER = ("[Unit]\nDescription=a worker that logs at every level\n[Service]\n"
          "ExecStart=/bin/sh -c 'echo \"INFO worker started\"; i=0; while true; do "
          "echo \"INFO tick $i\"; [ $((i % 5)) = 4 ] && echo \"WARNING queue is slow\"; "
          "i=$((i+1)); sleep 0.4; done'\nRestart=on-failure\nRestartSec=1\n"
          "[Install]\nWantedBy=stack.target\n")
OTHER_RUNTIME = ("[Unit]\nDescription=only for the docker runtime\nConditionRuntime=docker\n"
                 "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=stack.target\n")
LOAD_S = 25.0


def _load(gateway: str, stop: threading.Event, done: list[int | str],
          refused: list[str]) -> None:
    """One client sending requests back to back (a timeout is counted, not raised: the machine
    is shared and can be slow); what a failed request answered goes to ``refused``."""
    with httpx.Client(timeout=120) as client:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                answer = client.post(gateway + "/api/generate",
                                     json={"prompt": f"Count to {n % 7 + 3} in words.",
                                           "max_length": 8 + (n % 3) * 8, "temperature": 0.7})
                done.append(answer.status_code)
                if answer.status_code != 200:
                    refused.append(f"{answer.status_code} {answer.text[:300]}")
            except httpx.TimeoutException:
                done.append("timeout")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackDaemon, str, str]]:
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed: sudo apt-get install caddy")
    root = tmp_path_factory.mktemp("charts")
    env = {**stack_env(build_gguf_model(root / "model")), "DASHBOARD_SAMPLE_S": "0.5"}
    daemon = StackDaemon(root / "stack", ["model-service.service", "gateway.service",
                                          "stack.target"], env)
    daemon.write_unit("worker.service", WORKER)
    daemon.write_unit("docker-only.service", OTHER_RUNTIME)
    daemon.start()
    try:
        daemon.wait_state("model-service", "running", timeout=180, health="healthy")
        daemon.wait_state("gateway", "running", timeout=60)
        daemon.wait_state("worker", "running")
        gateway = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        wait_for(lambda: httpx.get(gateway + "/api/health", timeout=5).status_code == 200, 60,
                 "the gateway to route /api")
        yield daemon, f"http://127.0.0.1:{env['DASHBOARD_PORT']}", gateway
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def loaded(stack: tuple[StackDaemon, str, str]) -> tuple[StackDaemon, str]:
    """The stack after LOAD_S seconds of 3 concurrent clients, and a worker killed (SIGKILL)
    halfway through and restarted by the supervisor."""
    daemon, url, gateway = stack
    stop, done, refused = threading.Event(), [], []  # type: ignore[var-annotated]
    clients = [threading.Thread(target=_load, args=(gateway, stop, done, refused))
               for _ in range(3)]
    for client in clients:
        client.start()
    try:
        time.sleep(LOAD_S / 2)
        pid = daemon.unit("worker")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: daemon.unit("worker")["restarts"] >= 1 and
                 daemon.unit("worker")["state"] == "running", 30, "the worker's restart")
        time.sleep(LOAD_S / 2)
    finally:
        stop.set()
        for client in clients:
            client.join(90)
    assert done.count(200) >= 3 and set(done) <= {200, "timeout"}, (
        f"{done}\n{refused[:3]}\n{daemon.log_tail(80)}")
    time.sleep(2)  # a few quiet points after the load: the charts show it ending
    return daemon, url


def test_history_holds_the_run_under_load(loaded: tuple[StackDaemon, str]) -> None:
    daemon, url = loaded
    history = httpx.get(url + "/api/history", timeout=60).json()
    model = history["models"]["model-service"]
    assert len(model["t"]) >= 20, len(model["t"])
    tokens = [v for v in model["tokens_per_s"] if v]
    assert tokens and max(tokens) > 5, model["tokens_per_s"]
    assert any(v and v > 0 for v in model["requests_per_s"])
    p50 = [v for v in model["p50_s"] if v]
    p95 = [v for v in model["p95_s"] if v]
    assert p50 and p95 and max(p95) >= max(p50) * 0.99 and max(p95) < 60
    assert any(v is not None for v in model["queued"])
    worker = history["units"]["worker"]
    assert len(worker["t"]) >= 20 and any(v for v in worker["memory"])
    service = history["units"]["model-service"]
    assert max(v or 0 for v in service["cpu"]) > 10  # generating keeps a core busy
    assert "docker-only" not in history["units"]  # folded away, not charted
    # ?since= gives only newer points; a bad one is a 400 with a reason
    newer = httpx.get(url + "/api/history", params={"since": model["t"][-3]}, timeout=60).json()
    assert len(newer["models"]["model-service"]["t"]) <= 3
    bad = httpx.get(url + "/api/history", params={"since": "yesterday"}, timeout=60)
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]


def test_timeline_has_the_kill_and_the_restart(loaded: tuple[StackDaemon, str]) -> None:
    _, url = loaded
    entries = httpx.get(url + "/api/timeline", params={"unit": "worker"}, timeout=60).json()
    kinds = [e["kind"] for e in entries]
    assert "exit" in kinds and "restart" in kinds, entries
    exit_entry = entries[kinds.index("exit")]
    assert "SIGKILL" in exit_entry["reason"] or "signal 9" in exit_entry["reason"], exit_entry
    assert kinds.index("restart") > kinds.index("exit")
    assert all(e["unit"] != "docker-only" for e in
               httpx.get(url + "/api/timeline", timeout=60).json())


def test_unit_log_levels_and_parsed_access_lines(loaded: tuple[StackDaemon, str]) -> None:
    _, url = loaded
    worker = httpx.get(url + "/api/units/worker/log", params={"tail": 50}, timeout=60).json()
    levels = {line["level"] for line in worker["lines"]}
    assert {"info", "warning"} <= levels, levels
    gateway = httpx.get(url + "/api/units/gateway/log", params={"tail": 500}, timeout=60).json()
    hits = [line["access"] for line in gateway["lines"] if line["access"]]
    generate = [a for a in hits if a["path"] == "/api/generate"]
    assert generate, gateway["lines"][-5:]
    assert all(a["method"] == "POST" and a["status"] == 200 and a["duration_ms"] > 1
               for a in generate)
    assert httpx.get(url + "/api/units/nope/log", timeout=60).status_code == 404
    assert httpx.get(url + "/api/units/worker/log", params={"tail": "x"},
                     timeout=60).status_code == 400


def test_page_draws_charts_timeline_logs_and_folds_the_other_runtime(
        loaded: tuple[StackDaemon, str]) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed: sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright

    _, url = loaded
    ARTIFACTS.mkdir(exist_ok=True)
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)  # a shared, busy machine
            page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
            page.goto(url + "/", wait_until="domcontentloaded")
            page.wait_for_selector('tr[data-unit="worker"] td.chart canvas')
            page.wait_for_function("Number(document.body.dataset.modelPoints || 0) >= 20")
            assert page.evaluate("typeof uPlot") == "function"  # served by us
            # the charts hold data (not only axes): the model's series have non-null values
            drawn = page.evaluate("""() => [...document.querySelectorAll(
                '#chart-throughput, #chart-latency, td.chart')].map(
                n => n.querySelector('canvas') !== null)""")
            assert drawn and all(drawn)
            legend = page.inner_text("#chart-throughput")
            assert "tokens/s" in legend and "requests/s" in legend
            # the folded unit: a count and a toggle, not a row
            assert page.is_hidden('tr[data-unit="docker-only"]')
            assert "1 unit for the other runtime" in page.inner_text("#folded")
            page.screenshot(path=str(ARTIFACTS / "dashboard-charts.png"), full_page=True)
            page.click("#folded-toggle")
            page.wait_for_selector('tr[data-unit="docker-only"]', state="visible")
            page.click("#folded-toggle")
            # the timeline lists the kill and the restart
            page.wait_for_selector('#timeline tr[data-unit="worker"][data-kind="restart"]')
            exit_row = page.inner_text('#timeline tr[data-unit="worker"][data-kind="exit"]')
            assert "SIGKILL" in exit_row or "signal 9" in exit_row, exit_row
            # clicking the gateway: parsed access lines; clicking the worker: its log by level
            page.click('tr[data-unit="gateway"] td[data-field="name"]')
            page.wait_for_selector('#access tr[data-status="200"]')
            assert "/api/generate" in page.inner_text("#access")
            page.locator("#unit-log-box").screenshot(path=str(ARTIFACTS / "dashboard-access.png"))
            page.click('tr[data-unit="worker"] td[data-field="name"]')
            page.wait_for_selector('#unit-log .line[data-level="warning"]')
            page.locator("#timeline").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "dashboard-timeline.png"), full_page=True)
        finally:
            browser.close()
    assert not outside, outside  # nothing fetched from beyond the dashboard
    assert (ARTIFACTS / "dashboard-charts.png").stat().st_size > 30_000
