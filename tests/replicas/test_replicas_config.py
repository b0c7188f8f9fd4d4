"""MODEL_REPLICAS from the shipped unit files to the gateway config (no processes; the real
``caddy validate`` checks the config)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from llm_supervisor.config import Settings
from llm_supervisor.gateway import caddy
from llm_supervisor.gateway.files import write_all
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import merge_routes, routes_from_units
from llm_supervisor.units.loader import LoadResult, load_directory
from llm_supervisor.units.replicas import add_replicas, group_of, instances

REPO_UNITS = Path(__file__).resolve().parents[2] / "units"


def loaded_with(tmp_path: Path, replicas: int) -> LoadResult:
    settings = Settings(state_dir=tmp_path, model_service_port=5123, model_replicas=replicas)
    result = load_directory(REPO_UNITS, settings.expansion_vars())
    add_replicas(result, settings.expansion_vars(), settings.model_replicas)
    assert not result.errors, result.errors
    return result


def api_proxy(tmp_path: Path, replicas: int) -> dict:
    routes = merge_routes([routes_from_units(loaded_with(tmp_path, replicas).units.values())])
    config = caddy.render(routes, GatewayOptions(state_dir=tmp_path))
    server = config["apps"]["http"]["servers"]["gateway"]
    return {r["@id"]: r for r in server["routes"]}["route-model-service"]["handle"][-1]


def test_one_replica_is_the_plain_model_service(tmp_path: Path) -> None:
    units = loaded_with(tmp_path, 1).units
    assert [n for n in units if n.startswith("model-service")] == ["model-service.service"]


def test_replicas_are_instances_of_the_model_service_on_the_next_ports(tmp_path: Path) -> None:
    units = loaded_with(tmp_path, 3).units
    assert instances(units, "model-service@3.service") == [
        "model-service.service", "model-service@2.service", "model-service@3.service"]
    for index, port in ((2, 5124), (3, 5125)):
        unit = units[f"model-service@{index}.service"]
        assert unit.environment["MODEL_SERVICE_PORT"] == str(port)
        assert unit.health is not None
        assert unit.health.target == f"http://127.0.0.1:{port}/api/health"
        assert unit.route is not None and unit.route.upstream == f"http://127.0.0.1:{port}"
        # One writer of the model directory: the others start once instance 1 is ready.
        assert "model-service.service" in unit.after
        assert unit.wanted_by == ["stack.target"]
        assert unit.exec_start == units["model-service.service"].exec_start
    assert units["model-service.service"].environment["MODEL_SERVICE_PORT"] == "5123"
    assert group_of("model-service@3.service") == "model-service.service"
    assert group_of("gateway.service") == "gateway.service"


def test_the_api_route_balances_the_replicas_and_checks_they_are_ready(tmp_path: Path) -> None:
    proxy = api_proxy(tmp_path, 2)
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:5123"}, {"dial": "127.0.0.1:5124"}]
    active = proxy["health_checks"]["active"]
    assert active["uri"] == "/api/health" and active["interval"] == "1s"
    ready = re.compile(active["expect_body"])
    assert ready.search('{"status":"ready","model":"m"}')
    assert not ready.search('{"status":"draining","model":"m"}')
    assert not ready.search('{"status":"loading","progress":0.4}')
    assert proxy["health_checks"]["passive"]["max_fails"] == 1


def test_a_single_replica_keeps_the_plain_proxy_config(tmp_path: Path) -> None:
    proxy = api_proxy(tmp_path, 1)
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:5123"}]
    assert proxy["health_checks"] == {"active": {"uri": "/api/health", "interval": "2s",
                                                 "timeout": "2s"}}
    assert proxy["flush_interval"] == -1


def test_caddy_accepts_the_replicas_config(tmp_path: Path) -> None:
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed: sudo apt-get install caddy")
    routes = merge_routes([routes_from_units(loaded_with(tmp_path, 3).units.values())])
    options = GatewayOptions(state_dir=tmp_path)
    write_all(routes, options)
    result = subprocess.run(["caddy", "validate", "--config", str(options.caddy_config)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                 "XDG_DATA_HOME": str(tmp_path / "d"),
                                 "XDG_CONFIG_HOME": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
