"""monitor --model/--api/--network and the dashboard's model and route panels, on the real
model service (offline SmolLM2 GGUF, llama.cpp) behind the real Caddy gateway."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.cli_stack import StackDaemon, stack_env
from tests.daemon_harness import wait_for
from tests.model_fixtures import build_gguf_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackDaemon]:
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed: sudo apt-get install caddy")
    root = tmp_path_factory.mktemp("monitor-stack")
    model_dir = build_gguf_model(root / "model")
    daemon = StackDaemon(root / "stack", ["model-service.service", "gateway.service",
                                          "stack.target"], stack_env(model_dir))
    daemon.start()
    try:
        daemon.wait_state("gateway", "running", timeout=60)
        daemon.wait_state("model-service", "running", timeout=180, health="healthy")
        yield daemon
    finally:
        daemon.stop()


def test_monitor_model_shows_what_serves_and_its_throughput(stack: StackDaemon):
    stack.ctl("monitor", "--api", check=True)  # a generate, so tokens/s has something to say
    out = stack.ctl("monitor", "--model", check=True).stdout
    assert "ready" in out and "engine llama.cpp" in out and "quantization" in out
    assert "tokens/s served" in out and "requests " in out and "mean latency" in out


def test_monitor_api_probes_through_the_gateway_and_directly(stack: StackDaemon):
    out = stack.ctl("monitor", "--api", check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith(("health", "generate"))]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("health", "gateway", "PASS"), ("generate", "gateway", "PASS"),
        ("health", "direct", "PASS"), ("generate", "direct", "PASS")], out
    assert all(r[4] == "ms" and r[3].isdigit() for r in rows)
    assert f"127.0.0.1:{stack.env['GATEWAY_PORT']}" in out


def test_monitor_network_shows_ports_and_routes_with_upstream_health(stack: StackDaemon):
    out = stack.ctl("monitor", "--network", check=True).stdout
    model_port, gateway_port = stack.env["MODEL_SERVICE_PORT"], stack.env["GATEWAY_PORT"]
    model_row = next(line for line in out.splitlines() if line.startswith("model-service "))
    assert f":{model_port}" in model_row
    gateway_row = next(line for line in out.splitlines() if line.startswith("gateway "))
    assert f":{gateway_port}" in gateway_row
    api_route = next(line for line in out.splitlines() if line.startswith("/api "))
    assert f"127.0.0.1:{model_port}" in api_route and "HTTP 200" in api_route


def test_dashboard_shows_the_model_and_routes(stack: StackDaemon):
    url = f"http://127.0.0.1:{stack.env['DASHBOARD_PORT']}"

    def ready_overview() -> dict | None:
        overview = httpx.get(url + "/api/overview", timeout=5).json()
        health = (overview["model"] or {}).get("health") or {}
        return overview if health.get("status") == "ready" else None

    overview = wait_for(ready_overview, 30, "the model in the dashboard")
    assert overview["model"]["health"]["engine"] == "llama.cpp"
    prefixes = {route["path_prefix"] for route in overview["routes"]}
    assert {"/", "/api"} <= prefixes
    api = next(route for route in overview["routes"] if route["path_prefix"] == "/api")
    assert api["healthy"] == ["healthy"]
    if shutil.which("chromium") is None:
        return
    from playwright.sync_api import sync_playwright

    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/", wait_until="domcontentloaded")
            page.wait_for_function(
                "document.querySelector('#model-state').textContent.startsWith('ready')",
                timeout=30_000)
            page.wait_for_selector('tr[data-route="/api"]', timeout=10_000)
            page.wait_for_selector('tr[data-metric="tokens/s"]', timeout=10_000)
            page.screenshot(path=str(artifacts / "dashboard-stack.png"), full_page=True)
        finally:
            browser.close()
