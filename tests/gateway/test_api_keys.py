"""API keys at the gateway, through real Traefik and real Caddy (parametrised).

A daemon whose gateway listens beyond loopback (BIND_ADDRESS=0.0.0.0) with no API_KEYS_FILE:
the keys file is generated 0600 with one key on first start; /api/* and /v1/* then need
``Authorization: Bearer KEY`` (401 with a JSON reason otherwise) while / stays open; a key added
to the file works at once and a removed one stops working, with no restart of anything. The
upstream is tests/programs/tiny_http.py (answers "ok" on every path), standing in for the
model service, which this test does not need. The loopback-only default staying open is proved
by every other gateway test, which sends no key.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import GATEWAYS, require_gateway
from tests.gateway.supervisor_daemon import REPO_ROOT, Daemon, free_port, wait_for

TINY_HTTP = REPO_ROOT / "tests" / "programs" / "tiny_http.py"


class Guarded:
    def __init__(self, daemon: Daemon, url: str, program: str):
        self.daemon, self.url, self.program = daemon, url, program
        self.keys_file = daemon.state_dir / "gateway" / "api-keys"

    def key(self) -> str:
        return next(line for line in self.keys_file.read_text().splitlines()
                    if line and not line.startswith("#"))


@pytest.fixture(scope="module", params=GATEWAYS)
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Guarded]:
    program = request.param
    require_gateway(program)
    root = tmp_path_factory.mktemp(f"keys-{program}")
    gateway_port, upstream = free_port(), free_port()
    daemon = Daemon(root, ["gateway.service", "stack.target"], {
        "GATEWAY": program, "BIND_ADDRESS": "0.0.0.0", "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_ADMIN_PORT": str(free_port()), "MODEL_SERVICE_PORT": str(upstream),
        "DASHBOARD_PORT": "0"})
    daemon.write_unit("echo.service", (
        "[Unit]\nDescription=stands in for the model service\n"
        f"[Service]\nExecStart={sys.executable} {TINY_HTTP} {upstream}\n"
        f"[Health]\nCheck=http://127.0.0.1:{upstream}/\nInterval=1\n"
        f"[Route]\nPathPrefix=/api\nUpstream=http://127.0.0.1:{upstream}\nHealthPath=/\n"
        "[Install]\nWantedBy=stack.target\n"))
    daemon.start("stack.target")
    try:
        daemon.wait_ready("echo", 30)
        daemon.wait_ready("gateway", 30)
        url = f"http://127.0.0.1:{gateway_port}"
        wait_for(lambda: httpx.get(f"{url}/", timeout=5).status_code == 200, 30,
                 f"{program} to route /")
        yield Guarded(daemon, url, program)
    finally:
        daemon.stop()


def test_keys_file_is_generated_private_with_one_key(guarded: Guarded) -> None:
    mode = stat.S_IMODE(guarded.keys_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert len(guarded.key()) >= 40
    info = guarded.daemon.client.get("/gateway")["api_keys"]
    assert info["file"] == str(guarded.keys_file)


@pytest.mark.parametrize("path", ["/api/health", "/api/generate", "/v1/models", "/v1"])
def test_guarded_paths_refuse_requests_without_a_valid_key(guarded: Guarded, path: str) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {guarded.key()}"}):
            response = http.get(path, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"]["type"] == "unauthorized"
            assert "API_KEYS_FILE" in response.json()["error"]["message"]
            assert response.headers["www-authenticate"].startswith("Bearer")
        good = http.get(path, headers={"Authorization": f"Bearer {guarded.key()}"})
        assert good.status_code == 200 and good.text == "ok"


def test_the_page_and_other_paths_stay_open(guarded: Guarded) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        assert http.get("/").status_code == 200
        assert http.get("/apifoo").status_code == 200  # not under /api: the page's route
        assert http.get("/v1x").status_code == 200


def test_keys_reload_without_a_restart(guarded: Guarded, tmp_path: Path) -> None:
    gateway_pid = guarded.daemon.unit("gateway")["pid"]
    original = guarded.keys_file.read_text()
    new_key = "added-key-" + "x" * 30
    try:
        guarded.keys_file.write_text(original + new_key + "\n")
        with httpx.Client(base_url=guarded.url, timeout=10) as http:
            auth = {"Authorization": f"Bearer {new_key}"}
            assert http.get("/api/x", headers=auth).status_code == 200
            guarded.keys_file.write_text(f"{new_key}\n")  # the generated key revoked
            assert http.get("/api/x", headers={"Authorization": f"Bearer {guarded.key()}"}
                            ).status_code == 200  # guarded.key() is now new_key
            old = next(line for line in original.splitlines() if line and line[0] != "#")
            assert http.get("/api/x", headers={"Authorization": f"Bearer {old}"}
                            ).status_code == 401
    finally:
        guarded.keys_file.write_text(original)
    assert guarded.daemon.unit("gateway")["pid"] == gateway_pid
