"""The supervised stack through the real gateway, Traefik and Caddy alike (``stack`` is
parametrised): llm-supervisord runs the shipped model-service and gateway units, the model
service serves the tiny test model. Proves the seed's curl, unbuffered SSE, the admin API kept
private, reload without a gateway restart, a killed gateway replaced, a restarting model service
behind it, and a dead upstream answered 502/503 quickly.

Measured numbers are printed (``pytest -s`` shows them) and documented in docs/gateway.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.gateway.supervisor_daemon import REPO_ROOT, Stack, free_port, require_programs, wait_for

POLISH_PROMPT = "Napisz krótki wiersz o jesieni"
ARTIFACTS = REPO_ROOT / "test-artifacts"


def test_original_curl_commands_work_through_the_gateway(stack: Stack) -> None:
    """The old README's commands, unchanged apart from the port."""
    with stack.http() as http:
        health = http.get("/api/health")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ready"
        reply = http.post("/api/generate", json={"prompt": POLISH_PROMPT, "max_length": 16,
                                                 "temperature": 0.7})
        assert reply.status_code == 200, reply.text
        assert isinstance(reply.json()["generated_text"], str)
        assert reply.json()["generated_tokens"] > 0
        page = http.get("/")
        assert page.status_code == 200 and 'id="generate"' in page.text
        assert http.get("/apifoo").status_code == 404  # /api does not swallow /apifoo
    if shutil.which("curl") is None:
        return
    base = f"http://localhost:{stack.gateway_port}"
    out = subprocess.run(["curl", "-sS", f"{base}/api/health"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert json.loads(out)["status"] == "ready"
    body = json.dumps({"prompt": POLISH_PROMPT, "max_length": 8, "temperature": 0.7})
    out = subprocess.run(["curl", "-sS", "-X", "POST", f"{base}/api/generate", "-H",
                          "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "generated_text" in json.loads(out)


def test_streamed_generation_is_not_buffered_by_the_gateway(stack: Stack) -> None:
    events = []
    with stack.http() as http, http.stream(
            "POST", "/api/generate",
            json={"prompt": POLISH_PROMPT, "max_length": 12, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:])["type"])
    assert events[0] == "token" and events[-1] == "done"


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_traefik_dashboard_only_on_the_loopback_admin_port_in_secure_mode(stack: Stack) -> None:
    """Traefik's API/dashboard answers on 127.0.0.1:GATEWAY_ADMIN_PORT through the api@internal
    router; the public entry point does not serve it, and api.insecure (:8080) is off."""
    if stack.program != "traefik":
        pytest.skip("Traefik only (Caddy's admin API is the Unix socket, tested below)")
    pid = stack.daemon.unit("gateway")["pid"]
    process = psutil.Process(pid)
    assert Path(process.exe()).name == "traefik"  # exec'd: the unit's pid is Traefik itself
    listening = {(c.laddr.ip, c.laddr.port) for c in process.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", stack.gateway_port), ("127.0.0.1", stack.admin_port)}
    admin = f"http://127.0.0.1:{stack.admin_port}"
    assert httpx.get(f"{admin}/api/version", timeout=10).json()["Version"] == "3.7.15"
    assert httpx.get(f"{admin}/dashboard/", timeout=10).status_code == 200
    public = httpx.get(f"{stack.url}/api/rawdata", timeout=10)
    assert public.status_code == 404 and "routers" not in public.text  # the model server's 404
    static = (stack.daemon.state_dir / "gateway" / "traefik" / "traefik.yml").read_text()
    assert "insecure" not in static
    info = stack.daemon.client.get("/gateway")
    assert info["program"] == "traefik" and info["version"] == "3.7.15"
    assert info["admin_url"] == admin
    live = info["live"]
    assert live["routers"]["model-service@file"]["status"] == "enabled"
    servers = live["services"]["model-service@file"]["servers"]
    assert servers == {f"http://127.0.0.1:{stack.model_port}": "UP"}


def test_gateway_listens_on_loopback_and_its_admin_api_only_on_a_private_socket(
        stack: Stack) -> None:
    if stack.program != "caddy":
        pytest.skip("Caddy only (Traefik's API is on the loopback admin port, tested above)")
    pid = stack.daemon.unit("gateway")["pid"]
    process = psutil.Process(pid)
    assert Path(process.exe()).name == "caddy"  # exec'd: the unit's pid is Caddy itself
    listening = {(c.laddr.ip, c.laddr.port) for c in process.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    # No admin API on TCP at all (it used to be 127.0.0.1:8080, read-write for every local user).
    assert listening == {("127.0.0.1", stack.gateway_port)}
    assert _refused(2019)  # Caddy's own default admin address
    if not _refused(8080):  # 8080 belongs to the operator dashboard; whoever holds it, not Caddy
        holders = {c.pid for c in psutil.net_connections("inet") if c.laddr
                   and c.laddr.port == 8080 and c.status == psutil.CONN_LISTEN}
        assert pid not in holders
    admin = stack.daemon.state_dir / "gateway" / "admin" / "caddy.sock"
    assert stat.S_ISSOCK(admin.stat().st_mode)
    assert stat.S_IMODE(admin.stat().st_mode) & 0o077 == 0, oct(admin.stat().st_mode)
    assert stat.S_IMODE(admin.parent.stat().st_mode) == 0o700
    assert admin.stat().st_uid == process.uids().effective  # the gateway's own user made it
    transport = httpx.HTTPTransport(uds=str(admin))
    with httpx.Client(transport=transport, base_url="http://localhost", timeout=10) as client:
        config = client.get("/config/", headers={"Host": ""}).json()
    assert config["admin"]["listen"] == f"unix/{admin}"
    info = stack.daemon.client.get("/gateway")
    assert info["program"] == "caddy" and info["version"] == "2.6.2"
    assert info["admin_url"] == f"unix:{admin}"
    assert f"127.0.0.1:{stack.model_port}" in info["live"]["upstreams"]
    # /api/generate and /v1 go to the model router (many models, one endpoint: docs/models.md).
    assert [r["path_prefix"] for r in info["routes"]] == ["/api/generate", "/api", "/v1", "/"]


def test_other_local_users_cannot_reach_the_admin_socket(stack: Stack) -> None:
    """The attack from issue 9: a local user loading a config. As ``nobody`` the socket is
    unreachable (EACCES), whoever the gateway runs as."""
    if stack.program != "caddy":
        pytest.skip("Caddy only: Traefik's configuration is files, not an admin API")
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    admin = stack.daemon.state_dir / "gateway" / "admin" / "caddy.sock"
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n"
             "    print(type(e).__name__)\nelse:\n    print('connected')\n")
    # /usr/bin/python3: this venv's interpreter may sit under /root (0700), out of nobody's reach.
    result = subprocess.run([shutil.which("python3", path="/usr/bin:/bin") or "python3", "-c",
                             probe, str(admin)], user=65534, group=65534, extra_groups=[],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "PermissionError", result.stdout + result.stderr


@pytest.mark.browser
def test_real_browser_uses_the_test_page_through_the_gateway(stack: Stack) -> None:
    require_programs("chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    seen_urls: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.on("request", lambda request: seen_urls.append(request.url))
            page.goto(stack.url + "/", wait_until="domcontentloaded")
            page.wait_for_selector("#health.ready", timeout=30_000)
            page.fill("#prompt", "Write one sentence about autumn.")
            page.fill("#max_length", "24")
            page.fill("#temperature", "0.7")
            page.click("#generate")
            page.wait_for_function(
                "document.querySelector('#stats').textContent.includes('tokens')",
                timeout=60_000)
            text = page.inner_text("#output")
            page.screenshot(path=str(ARTIFACTS / "browser-test-page.png"), full_page=True)
        finally:
            browser.close()
    assert text.strip(), "no generated text appeared"
    assert "[error" not in text and "HTTP " not in text
    assert seen_urls and all(url.startswith(stack.url) for url in seen_urls), seen_urls
    assert any(url.endswith("/api/generate") for url in seen_urls)


def test_reload_adds_a_route_without_restarting_the_gateway(stack: Stack, tmp_path: Path) -> None:
    """A new unit with [Route] StripPrefix=yes: `reload` loads the new config into the running
    gateway (Caddy: its admin API; Traefik: its watched file) without restarting it;
    /files/hello.txt reaches the new unit as /hello.txt."""
    served = tmp_path / "www"
    served.mkdir()
    (served / "hello.txt").write_text("hello through the gateway\n")
    port = free_port()
    unit = stack.daemon.units_dir / "files-demo.service"
    unit.write_text(
        "[Unit]\nDescription=static files for the reload test\n"
        f"[Service]\nExecStart={sys.executable} -m http.server --bind 127.0.0.1 "
        f"--directory {served} {port}\n"
        f"[Health]\nCheck=http://127.0.0.1:{port}/hello.txt\nInterval=1\n"
        f"[Route]\nPathPrefix=/files\nUpstream=http://127.0.0.1:{port}\nStripPrefix=yes\n"
        "[Install]\nWantedBy=stack.target\n")
    gateway_pid = stack.daemon.unit("gateway")["pid"]
    try:
        summary = stack.daemon.client.post("/reload")
        assert summary["added"] == ["files-demo.service"]
        stack.daemon.wait_ready("files-demo", 30)
        with stack.http(timeout=10) as http:
            response = wait_for(lambda: (r := http.get("/files/hello.txt")).status_code == 200
                                and r, 15, "the new route")
            assert response.text == "hello through the gateway\n"
            assert http.get("/api/health").status_code == 200  # the other routes still work
        assert stack.daemon.unit("gateway")["pid"] == gateway_pid
    finally:
        unit.unlink()
        stack.daemon.client.post("/reload")
    with stack.http(timeout=10) as http:
        wait_for(lambda: http.get("/files/hello.txt").status_code == 404, 15,
                 "the route to disappear after the unit was removed")


def test_gateway_killed_with_sigkill_is_restarted(stack: Stack) -> None:
    before = stack.daemon.unit("gateway")
    killed_at = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)

    def answering_again() -> bool:
        status = stack.daemon.unit("gateway")
        if status["pid"] in (None, before["pid"]):
            return False
        return httpx.get(f"{stack.url}/api/health", timeout=2).status_code == 200

    wait_for(answering_again, 20, "the gateway to answer again",
             diagnostics=lambda: stack.daemon.diagnostics("gateway"))
    healed = time.monotonic() - killed_at
    after = stack.daemon.unit("gateway")
    assert after["restarts"] == before["restarts"] + 1
    print(f"\n[measured] gateway SIGKILL -> /api/health 200 again through it: {healed:.2f} s")
    assert healed < 10


def _retrying_generate(url: str, deadline_s: float, log: list[dict[str, Any]]) -> bool:
    """The client policy we document: retry 502/503/504 and connection errors with a short
    backoff, for at most ``deadline_s``."""
    started = time.monotonic()
    attempts, delay = 0, 0.2
    while time.monotonic() - started < deadline_s:
        attempts += 1
        t0 = time.monotonic()
        try:
            response = httpx.post(url, json={"prompt": "Hi", "max_length": 4}, timeout=30)
            status: int | str = response.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        log.append({"status": status, "seconds": time.monotonic() - t0, "attempt": attempts})
        if status == 200:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return False


def test_model_service_restart_with_a_retrying_client(stack: Stack) -> None:
    """While the model service restarts, a client that retries 502/503 (see docs/gateway.md)
    gets every answer. Caddy itself holds requests that cannot connect for up to try_duration
    (15 s), Traefik retries a refused connection 4 times and then answers 502; the client also
    sees the model server's own 503 "loading" while it loads."""
    url = f"{stack.url}/api/generate"
    stop = threading.Event()
    outcomes: list[bool] = []
    log: list[dict[str, Any]] = []

    def client() -> None:
        while not stop.is_set():
            outcomes.append(_retrying_generate(url, 60, log))
            time.sleep(0.05)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    stack.daemon.client.post("/units/model-service/restart")
    stack.daemon.wait_ready("model-service", 120)
    restart_s = time.monotonic() - t0
    time.sleep(1.0)
    stop.set()
    thread.join(90)
    failures = [entry for entry in log if entry["status"] != 200]
    slowest = max(entry["seconds"] for entry in log)
    print(f"\n[measured] model-service restart (stop + start + load) {restart_s:.2f} s; "
          f"{len(outcomes)} logical requests, {len(log)} HTTP attempts, non-200 attempts: "
          f"{sorted({str(e['status']) for e in failures})} x{len(failures)}; "
          f"slowest single attempt {slowest:.2f} s")
    assert outcomes and all(outcomes), log


def test_unreachable_upstream_answers_502_or_503_quickly(stack: Stack, tmp_path: Path) -> None:
    """A route whose upstream refuses connections (its unit runs, but nothing listens on the
    port it names): the gateway answers 502/503 soon, never hangs. Traefik gives up after its
    retries (about 1 s); Caddy keeps trying for try_duration (15 s) first, by design, so that a
    restarting upstream is waited for."""
    dead_port = free_port()
    unit = stack.daemon.units_dir / "dead-upstream.service"
    unit.write_text(
        "[Unit]\nDescription=a route to a port nobody listens on\n"
        f"[Service]\nExecStart={sys.executable} -c \"import time; time.sleep(3600)\"\n"
        f"[Route]\nPathPrefix=/dead\nUpstream=http://127.0.0.1:{dead_port}\n"
        "[Install]\nWantedBy=stack.target\n")
    try:
        stack.daemon.client.post("/reload")
        stack.daemon.wait_ready("dead-upstream", 30)
        limit = 5.0 if stack.program == "traefik" else 20.0
        with stack.http(timeout=30) as http:
            def answered() -> tuple[int, float] | None:
                t0 = time.monotonic()
                status = http.get("/dead/x").status_code
                # 404 from the model server until the gateway has the new route.
                return None if status == 404 else (status, time.monotonic() - t0)
            status, seconds = wait_for(answered, 30, "the /dead route")
        print(f"\n[measured] {stack.program}: refused upstream -> HTTP {status} in {seconds:.2f} s")
        assert status in (502, 503)
        assert seconds < limit
    finally:
        unit.unlink()
        stack.daemon.client.post("/reload")


def test_status_monitor_and_doctor_name_the_gateway_and_its_version(stack: Stack) -> None:
    """What an operator sees: `status` ends with the gateway line, `monitor --network` shows what
    the gateway itself says about the upstream, `doctor` checks its binary and version."""
    version = {"traefik": "3.7.15", "caddy": "2.6.2"}[stack.program]
    status = stack.daemon.ctl("status", check=True).stdout
    footer = status.strip().splitlines()[-1]
    assert footer.startswith(f"gateway {stack.program} {version} http://127.0.0.1:"), status
    assert ("dashboard" in footer) == (stack.program == "traefik")
    network = stack.daemon.ctl("monitor", "--network", check=True).stdout
    assert f"gateway {stack.program} {version}" in network, network
    upstream_row = next(line for line in network.splitlines()
                        if f"127.0.0.1:{stack.model_port}" in line and "/api" in line)
    assert ("UP" if stack.program == "traefik" else "in flight") in upstream_row, network
    doctor = stack.daemon.ctl("doctor").stdout
    assert f"gateway: {stack.program} {version} at /" in doctor, doctor
    assert "api keys: none: the gateway listens on 127.0.0.1 only" in doctor, doctor
