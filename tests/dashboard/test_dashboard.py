"""The operator dashboard served by the daemon: JSON, live page in a real headless Chromium,
protection of its actions, and a daemon that keeps running when its port is taken."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import Daemon, wait_for
from tests.dashboard.dashboard_helpers import (
    ARTIFACTS,
    TALKER,
    dashboard_daemon,
    page_token,
    wait_dashboard,
)


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    daemon, url = dashboard_daemon(tmp_path)
    daemon.write_unit("alpha.service", TALKER.format(tag="alpha"))
    daemon.write_unit("beta.service", TALKER.format(tag="beta"))
    daemon.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    daemon.start()
    try:
        wait_dashboard(url)
        daemon.wait_state("alpha", "running")
        daemon.wait_state("beta", "running")
        yield daemon, url
    finally:
        daemon.stop()


def _status_json(daemon: Daemon) -> dict[str, dict]:
    return {u["name"]: u for u in json.loads(daemon.ctl("status", "--json", check=True).stdout)}


def test_api_units_is_what_status_json_says(dashboard: tuple[Daemon, str]):
    daemon, url = dashboard
    api = {u["name"]: u for u in httpx.get(url + "/api/units", timeout=5).json()}
    status = _status_json(daemon)
    assert set(api) == set(status) == {"alpha", "beta", "idle"}
    for name, unit in status.items():
        for key in ("state", "health", "pid", "restarts", "reason", "since"):
            assert api[name][key] == unit[key], (name, key)
        assert (api[name]["memory_bytes"] is None) == (unit["memory_bytes"] is None)
    overview = httpx.get(url + "/api/overview", timeout=5).json()
    assert {"model", "routes", "links", "logs"} <= set(overview)
    wait_for(lambda: any(line["unit"] == "alpha" for line in
                         httpx.get(url + "/api/overview", timeout=5).json()["logs"]), 20,
             "alpha's output in the overview")


def test_actions_need_the_page_token_and_our_host(dashboard: tuple[Daemon, str]):
    daemon, url = dashboard
    token = page_token(url)
    stop = url + "/api/units/beta/stop"
    assert httpx.post(stop, timeout=5).status_code == 403  # no token
    assert httpx.post(stop, headers={"X-Dashboard-Token": "x" * len(token)},
                      timeout=5).status_code == 403
    assert httpx.post(stop, headers={"X-Dashboard-Token": token,
                                     "Origin": "http://evil.example"}, timeout=5).status_code == 403
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host
    rebound = httpx.get(url + "/api/units", headers={"Host": "evil.example"}, timeout=5)
    assert rebound.status_code == 421
    assert httpx.get(url + "/", headers={"Host": "evil.example:80"}, timeout=5).status_code == 421
    assert daemon.unit("beta")["state"] == "running"  # nothing above did anything
    done = httpx.post(stop, headers={"X-Dashboard-Token": token}, timeout=30)
    assert done.status_code == 200, done.text
    assert daemon.unit("beta")["state"] == "inactive"


def test_page_in_headless_chromium_matches_status_and_updates_live(
        dashboard: tuple[Daemon, str]):
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed: sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright

    daemon, url = dashboard
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/", wait_until="domcontentloaded")
            page.wait_for_selector('tr[data-unit="idle"]', timeout=30_000)
            page.wait_for_function("document.querySelector('#logs').textContent.includes('alpha')",
                                   timeout=30_000)
            shown = page.eval_on_selector_all("#units tbody tr", """rows => rows.map(r => {
                const o = {}; r.querySelectorAll('td[data-field]').forEach(
                    c => o[c.dataset.field] = c.textContent); return o; })""")
            status = _status_json(daemon)
            assert {row["name"] for row in shown} == set(status)
            for row in shown:
                unit = status[row["name"]]
                assert row["state"] == unit["state"]
                assert row["health"].split(" ")[0] == unit["health"]
                assert row["restarts"] == str(unit["restarts"])
                assert (row["memory"] == "-") == (unit["memory_bytes"] is None)
            # a button on the page stops a unit; the event stream brings the new state
            page.click('tr[data-unit="alpha"] button[data-action="stop"]')
            page.wait_for_selector('tr[data-unit="alpha"] td[data-field="state"].state-inactive',
                                   timeout=30_000)
            assert daemon.unit("alpha")["state"] == "inactive"
            # and a change made elsewhere (the CLI) shows up without a reload
            daemon.ctl("start", "idle", check=True)
            page.wait_for_selector('tr[data-unit="idle"] td[data-field="state"].state-running',
                                   timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_a_taken_dashboard_port_does_not_stop_the_daemon(tmp_path: Path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    daemon, _ = dashboard_daemon(tmp_path, port)
    daemon.write_unit("alpha.service", TALKER.format(tag="alpha"))
    try:
        daemon.start()
        daemon.wait_state("alpha", "running")
        info = wait_for(lambda: daemon.client.get("/dashboard")["error"], 20, "the port error")
        assert f"127.0.0.1:{port}" in info and "DASHBOARD_PORT" in info
    finally:
        daemon.stop()
        holder.close()


FETCH = ("import sys, urllib.request, urllib.error\n"
         "try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)\n"
         "except urllib.error.HTTPError as e:\n    print(e.code)\n")


def test_other_local_users_are_refused(dashboard: tuple[Daemon, str]):
    """Loopback is shared by every user; the dashboard (like the 0600 control socket) serves
    only the daemon's user and root. Another uid is refused, page and token included."""
    import os
    import subprocess

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to make a request as another user")
    python = "/usr/bin/python3"  # the system one: any user may run it
    if not os.access(python, os.X_OK):
        pytest.skip("no system /usr/bin/python3 to run as another user")
    _, url = dashboard
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                python, "-c", FETCH, url + "/"], capture_output=True, text=True,
                               timeout=30, cwd="/")
    assert as_nobody.stdout.strip() == "403", as_nobody.stdout + as_nobody.stderr
    as_root = subprocess.run([python, "-c", FETCH, url + "/"], capture_output=True, text=True,
                             timeout=30, cwd="/")
    assert as_root.stdout.strip() == "200", as_root.stdout + as_root.stderr
