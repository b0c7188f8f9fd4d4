"""The gateway container's config: upstreams rewritten to container names (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

from llm_supervisor.gateway import docker_mode
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route
from llm_supervisor.units.model import ContainerSpec, Unit


def container_unit(name: str, *ports: str) -> Unit:
    unit = Unit(name=name, path=Path(f"/u/{name}"), kind="service")
    unit.container = ContainerSpec(image="x", ports=ports)
    return unit


def test_published_ports_map_to_alias_and_container_port() -> None:
    units = [container_unit("model-service.service", "127.0.0.1:5000:5000"),
             container_unit("other.service", "9000:80", "7000")]
    assert docker_mode.published_ports(units) == {5000: ("model-service", 5000),
                                                 9000: ("other", 80), 7000: ("other", 7000)}


def test_loopback_upstreams_become_container_names(tmp_path: Path) -> None:
    published = {5000: ("model-service", 5000)}
    routes = [Route(name="api", path_prefix="/api", upstreams=("http://127.0.0.1:5000",
                                                                "http://10.0.0.5:5000")),
              Route(name="root", path_prefix="/", upstreams=("http://localhost:6000",))]
    rewritten = docker_mode.container_routes(routes, published)
    assert rewritten[0].upstreams == ("http://model-service:5000", "http://10.0.0.5:5000")
    assert rewritten[1].upstreams == ("http://localhost:6000",), "not a container: unchanged"

    options = GatewayOptions(state_dir=tmp_path, listen_host="127.0.0.1", port=80)
    assert docker_mode.write(routes, options, published)
    path = docker_mode.config_path(options)
    config = json.loads(path.read_text())
    server = config["apps"]["http"]["servers"]["gateway"]
    assert server["listen"] == ["0.0.0.0:8000"], "inside the container, whatever the host port"
    dials = [u["dial"] for r in server["routes"] for h in r["handle"] if "upstreams" in h
             for u in h["upstreams"]]
    assert "model-service:5000" in dials
    assert config["admin"]["listen"].startswith("unix//tmp/"), "admin API only inside"
    assert path.stat().st_mode & 0o777 == 0o644, "readable by the container's uid 10001"
    assert not docker_mode.write(routes, options, published), "unchanged: not rewritten"
