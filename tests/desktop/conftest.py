"""The test desktop under a real daemon: xvfb, x11vnc, novnc, browser and the gateway units,
brought up by browser-test.target. A small static server stands in for the model service (the
browser only needs a page at "/" through the gateway); the real model is in tests/gateway."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.supervisor_daemon import Daemon, Desktop, free_port, require_programs  # noqa: E402

DESKTOP_UNITS = ["gateway.service", "xvfb.service", "x11vnc.service", "novnc.service",
                 "browser.service", "browser-test.target"]
FAKE_PAGE = "<!doctype html><title>fake test page</title><h1 id=generate>stand-in page</h1>"


@pytest.fixture(scope="module", params=["chromium", "firefox"])
def desktop(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """The desktop with each browser the browser unit can run (BROWSER=chromium|firefox)."""
    require_programs("caddy", "Xvfb", "x11vnc", "websockify",
                     "chromium" if request.param == "chromium" else "firefox-esr")
    if not Path("/usr/share/novnc/vnc.html").exists():
        pytest.skip("noVNC web client missing: sudo apt-get install novnc")
    root = tmp_path_factory.mktemp("desktop")
    ports = {name: free_port() for name in ("GATEWAY_PORT", "GATEWAY_ADMIN_PORT", "NOVNC_PORT",
                                            "VNC_PORT", "MODEL_SERVICE_PORT")}
    www = root / "www"
    www.mkdir()
    (www / "index.html").write_text(FAKE_PAGE)
    page_server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(www),
         str(ports["MODEL_SERVICE_PORT"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemon = Daemon(root, DESKTOP_UNITS, {"GATEWAY_PROGRAM": "caddy", "BROWSER": request.param,
                                          **{k: str(v) for k, v in ports.items()}})
    try:
        daemon.start("browser-test.target")
        for unit in ("xvfb", "x11vnc", "novnc", "gateway", "browser"):
            daemon.wait_ready(unit, 40)
        yield Desktop(daemon, ports)
    finally:
        try:
            daemon.stop()
        finally:
            page_server.terminate()
            page_server.wait(10)

