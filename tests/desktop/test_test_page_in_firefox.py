"""The test page as the old runbook showed it: Firefox ESR on the test desktop (BROWSER=auto
picks it when installed), seen through noVNC, with the real model service (llama.cpp on the
offline SmolLM2 GGUF) behind the real Caddy gateway. The browser unit opens the page with
``?prompt=...&autorun=1`` so it asks as soon as the model is ready; the answer is streamed
(``stream: true`` on /api/generate) and the page shows its tokens/s and time to first token.

Proves: the browser unit runs firefox-esr by default; Firefox itself sent the streamed request
through the gateway (Caddy's access line carries its User-Agent); a real noVNC client (in
headless Chromium, logged in with the generated password) shows the desktop, screenshotted into
test-artifacts/test-page-firefox-novnc.png once the answer is complete. The page's own text is
checked in Chromium (tests/gateway reads #stats there); here the screenshot is the evidence of
what Firefox drew, which a person looks at (README).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.dashboard.dashboard_helpers import ARTIFACTS
from tests.gateway.supervisor_daemon import UNITS_DIR, Daemon, free_port, require_programs, wait_for
from tests.model_fixtures import build_gguf_model

pytestmark = pytest.mark.slow

PROMPT = "Write two sentences about a lighthouse keeper."
UNITS = ["model-service.service", "gateway.service", "xvfb.service", "x11vnc.service",
         "novnc.service", "browser-test.target"]


@pytest.fixture(scope="module")
def firefox_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict]]:
    require_programs("caddy", "Xvfb", "x11vnc", "websockify", "firefox-esr")
    if not Path("/usr/share/novnc/vnc.html").exists():
        pytest.skip("noVNC web client missing: sudo apt-get install novnc")
    root = tmp_path_factory.mktemp("firefox")
    ports = {name: free_port() for name in ("GATEWAY_PORT", "GATEWAY_ADMIN_PORT", "NOVNC_PORT",
                                            "VNC_PORT", "MODEL_SERVICE_PORT", "DASHBOARD_PORT")}
    env = {"GATEWAY_PROGRAM": "caddy", "BROWSER": "auto", "ENGINE": "llama.cpp",
           "HF_HUB_OFFLINE": "1", "MODEL_PATH": str(build_gguf_model(root / "model")),
           **{k: str(v) for k, v in ports.items()}}
    daemon = Daemon(root, UNITS, env)
    page = f"/?autorun=1&max_length=48&prompt={quote(PROMPT)}"
    browser = (UNITS_DIR / "browser.service").read_text().replace(
        "http://127.0.0.1:${GATEWAY_PORT}/", "http://127.0.0.1:${GATEWAY_PORT}" + page)
    assert page in browser
    daemon.write_unit("browser.service", browser)
    try:
        daemon.start("browser-test.target")
        daemon.ctl("start", "model-service", check=True)  # the target is the desktop's only
        daemon.wait_ready("model-service", 240)
        for unit in ("xvfb", "x11vnc", "novnc", "gateway", "browser"):
            daemon.wait_ready(unit, 60)
        yield daemon, ports
    finally:
        daemon.stop()


def _firefox_generate_lines(daemon: Daemon) -> list[dict]:
    """Caddy's access lines for a streamed /api/generate sent by Firefox."""
    found = []
    for line in daemon.unit_log("gateway", 400).splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        request = entry.get("request") or {}
        agent = " ".join((request.get("headers") or {}).get("User-Agent") or [])
        if request.get("uri") == "/api/generate" and "Firefox" in agent:
            found.append(entry)
    return found


def test_firefox_streams_an_answer_seen_through_novnc(
        firefox_desktop: tuple[Daemon, dict]) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (the noVNC client runs in it)")
    from playwright.sync_api import sync_playwright

    daemon, ports = firefox_desktop
    pid = daemon.unit("browser")["pid"]
    assert "firefox" in Path(f"/proc/{pid}/exe").resolve().name  # BROWSER=auto: the runbook's
    # Firefox asks once the model is ready; the request completes when the stream ends
    done = wait_for(lambda: [e for e in _firefox_generate_lines(daemon)
                             if e.get("status") == 200], 240, "Firefox's streamed request",
                    interval=1.0)
    assert done[0]["duration"] > 0
    # the page was streamed: the model service counted a streaming request with tokens
    metrics = httpx.get(f"http://127.0.0.1:{ports['MODEL_SERVICE_PORT']}/metrics", timeout=30)
    assert "llm_generation_tokens_total" in metrics.text
    password = (daemon.state_dir / "desktop" / "vnc-password").read_text().strip()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "test-page-firefox-novnc.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.set_default_timeout(90_000)
            page.goto(f"http://127.0.0.1:{ports['NOVNC_PORT']}/vnc.html?autoconnect=1"
                      f"&resize=scale&password={quote(password)}")
            page.wait_for_selector("#noVNC_canvas, canvas", state="attached")
            page.wait_for_function(
                "document.getElementById('noVNC_status') === null || "
                "!document.querySelector('#noVNC_connect_dlg.noVNC_open')")
            time.sleep(4)  # the first full frame after connecting (nothing to wait on in noVNC)
            page.screenshot(path=str(shot))
            connected = page.evaluate("document.documentElement.classList.contains("
                                      "'noVNC_connected')")
        finally:
            browser.close()
    assert connected, "noVNC did not connect with the generated password"
    assert shot.stat().st_size > 30_000
