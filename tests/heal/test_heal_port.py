"""A taken port, for real: another process listens on the unit's port before it starts.

For an internal port (``MODEL_SERVICE_PORT``: the model service behind the gateway) the unit
moves to a free port, its health check and its ``[Route]`` upstream follow (so the gateway's
next render points at it), status names the holder, and the holder is left alone. For a
user-facing port (``GATEWAY_PORT``) the unit fails at once with the holder and the setting to
change: no restart loop."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from llm_supervisor.gateway.routes import routes_from_units
from llm_supervisor.heal import ports
from llm_supervisor.supervisor.manager import Manager
from tests.daemon_harness import free_port, wait_for
from tests.supervisor.manager_harness import run_manager, until

TINY_HTTP = Path(__file__).resolve().parents[1] / "programs" / "tiny_http.py"
HOLD = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])));"
        " s.listen(); print('held', flush=True); time.sleep(300)")


@pytest.fixture
def held_port() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(port)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    yield port, holder
    holder.kill()
    holder.wait()


def _unit(key: str, port: int) -> str:
    return f"""[Service]
ExecStart={sys.executable} {TINY_HTTP} {port}
Environment={key}={port}
RestartSec=0.1
[Health]
Check=http://127.0.0.1:{port}/
Interval=0.2
StartPeriod=20
[Route]
PathPrefix=/api
Upstream=http://127.0.0.1:{port}
[Install]
WantedBy=stack.target
"""


def test_holder_is_named(held_port: tuple[int, subprocess.Popen[str]]) -> None:
    port, holder = held_port
    found = ports.holder(port)
    assert found is not None and found.pid == holder.pid
    assert found.user == psutil.Process(os.getpid()).username()
    assert "socket" in found.command and not found.ours
    assert f"pid {holder.pid}" in found.describe()
    assert ports.holder(free_port()) is None


def test_internal_port_moves_and_the_route_follows(
        tmp_path: Path, held_port: tuple[int, subprocess.Popen[str]]) -> None:
    port, holder = held_port
    units = {"model.service": _unit("MODEL_SERVICE_PORT", port)}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["model.service"]
        await until(lambda: str(runner.health) == "healthy", "healthy on another port", 60)
        status = manager.status_of(runner)
        heal = status["heal"]
        new_port = int(heal["overrides"]["MODEL_SERVICE_PORT"])
        assert new_port != port
        assert heal["line"].startswith(f"healed: port {port} is held by pid "
                                       f"{holder.pid}")
        assert f"MODEL_SERVICE_PORT moved {port} → {new_port}" in heal["line"]
        assert httpx.get(f"http://127.0.0.1:{new_port}/", timeout=5).text == "ok"
        assert runner.unit.health is not None
        assert runner.unit.health.target == f"http://127.0.0.1:{new_port}/"
        routes = routes_from_units([runner.unit])
        assert routes[0]["upstreams"] == [f"http://127.0.0.1:{new_port}"]
        assert holder.poll() is None  # the holder is not ours to touch

    run_manager(tmp_path, units, [], scenario)


def test_user_facing_port_fails_with_the_setting(
        tmp_path: Path, held_port: tuple[int, subprocess.Popen[str]]) -> None:
    port, holder = held_port
    units = {"front.service": _unit("GATEWAY_PORT", port)}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["front.service"]
        await until(lambda: str(runner.state) == "failed", "failed", 60)
        assert f"pid {holder.pid}" in runner.reason
        assert "set GATEWAY_PORT=<free port>" in runner.reason
        assert runner.restarts == 0
        assert manager.status_of(runner)["port_holder"].startswith(f"port {port} is held")
        wait_for(lambda: holder.poll() is None, 1, "the holder still runs")

    run_manager(tmp_path, units, [], scenario)


def test_a_holder_of_ours_is_named_as_another_llm_supervisord() -> None:
    """A unit of another daemon carries our markers in its environment."""
    port = free_port()
    env = {**os.environ, "LLM_SUPERVISOR_OWNER": "/var/lib/other-daemon"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(port)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        found = ports.holder(port)
        assert found is not None and found.ours
        assert found.describe().startswith(
            f"port {port} is held by another llm-supervisord: pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


FRONT = ("import http.server, sys; body = sys.argv[2].encode()\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
         "        self.end_headers(); self.wfile.write(body)\n"
         "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")


def test_a_unit_that_reaches_the_moved_port_follows_it(
        tmp_path: Path, held_port: tuple[int, subprocess.Popen[str]]) -> None:
    """x11vnc's VNC_PORT moves; websockify (here: a program that names 127.0.0.1:VNC_PORT on
    its command line) gets the new port and is restarted."""
    port, _holder = held_port
    front_port = free_port()
    script = tmp_path / "front.py"
    script.write_text(FRONT)
    units = {
        "vnc.service": _unit("VNC_PORT", port).replace("[Route]\nPathPrefix=/api\n"
                                                       f"Upstream=http://127.0.0.1:{port}\n", ""),
        "front.service": (f"[Unit]\nAfter=vnc.service\nRequires=vnc.service\n[Service]\n"
                          f"ExecStart={sys.executable} {script} {front_port} 127.0.0.1:{port}\n"
                          "RestartSec=0.1\n[Health]\n"
                          f"Check=http://127.0.0.1:{front_port}/\nInterval=0.2\nStartPeriod=20\n"
                          "[Install]\nWantedBy=stack.target\n"),
    }

    async def scenario(manager: Manager) -> None:
        heal = manager.plugins.get_plugin("llm_supervisor.plugins.builtin.heal")
        heal.supervisor_started(supervisor=manager)  # the harness starts no daemon
        await manager.start_target()
        vnc = manager.runners["vnc.service"]
        await until(lambda: str(vnc.health) == "healthy", "vnc moved and healthy", 60)
        new_port = manager.status_of(vnc)["heal"]["overrides"]["VNC_PORT"]

        def front_follows() -> bool:
            try:
                reply = httpx.get(f"http://127.0.0.1:{front_port}/", timeout=2).text
            except httpx.HTTPError:
                return False
            return reply == f"127.0.0.1:{new_port}"

        await until(front_follows, "the front pointing at the moved port", 60)

    run_manager(tmp_path, units, [], scenario)
