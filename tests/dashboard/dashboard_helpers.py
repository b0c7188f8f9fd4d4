"""A real daemon with the dashboard on a free port (a plain module with a unique name)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.daemon_harness import Daemon, free_port, wait_for

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

TALKER = ("[Unit]\nDescription=talker {tag}\n[Service]\nExecStart=/bin/sh -c 'i=0; while true; "
          "do echo {tag} $i; i=$((i+1)); sleep 0.3; done'\n[Install]\nWantedBy=stack.target\n")


def dashboard_daemon(root: Path, port: int | None = None) -> tuple[Daemon, str]:
    port = port or free_port()
    daemon = Daemon(root, {"DASHBOARD_PORT": str(port), "BIND_ADDRESS": "127.0.0.1"})
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    return daemon, f"http://127.0.0.1:{port}"


def wait_dashboard(url: str) -> None:
    wait_for(lambda: httpx.get(url + "/api/units", timeout=2).status_code == 200, 30,
             "the dashboard to answer")


def page_token(url: str) -> str:
    html = httpx.get(url + "/", timeout=5).text
    marker = 'const TOKEN = "'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]
