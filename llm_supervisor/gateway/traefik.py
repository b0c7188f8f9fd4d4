"""Traefik as the gateway: a static config file plus file-provider dynamic config.

Static (``traefik.yml``): entry point ``web`` on BIND_ADDRESS:GATEWAY_PORT, entry point
``traefik`` on 127.0.0.1:GATEWAY_ADMIN_PORT for the API/dashboard (secure mode: ``api@internal``
is reachable only through a router on that loopback entry point, never ``api.insecure``), and
the file provider watching ``dynamic/``, so rewriting ``dynamic/routes.yml`` is the reload.

Dynamic (``dynamic/routes.yml``): per route one router (``PathPrefix``; Traefik's default
priority is the rule length, so ``/api`` wins over ``/``), one service with a loadBalancer, its
servers and a ``healthCheck``, a shared ``retry`` middleware, and a ``stripPrefix`` middleware
only for routes that ask for it.
"""

from __future__ import annotations

from typing import Any

from llm_supervisor.gateway.options import GatewayOptions, go_duration, host_port
from llm_supervisor.gateway.routes import Route

RETRY_MIDDLEWARE = "llm-supervisor-retry"
DASHBOARD_ROUTER = "llm-supervisor-dashboard"


def _rule(prefix: str) -> str:
    if prefix == "/":
        return "PathPrefix(`/`)"
    # PathPrefix(`/api`) alone would also match /apifoo.
    return f"Path(`{prefix}`) || PathPrefix(`{prefix}/`)"


def render_dynamic(routes: list[Route], options: GatewayOptions) -> dict[str, Any]:
    routers: dict[str, Any] = {
        DASHBOARD_ROUTER: {
            "rule": "PathPrefix(`/api`) || PathPrefix(`/dashboard`)",
            "service": "api@internal",
            "entryPoints": ["traefik"],
        },
    }
    services: dict[str, Any] = {}
    middlewares: dict[str, Any] = {
        RETRY_MIDDLEWARE: {
            "retry": {"attempts": options.retry_attempts,
                      "initialInterval": go_duration(options.try_interval_s)},
        },
    }
    for route in routes:
        chain = [RETRY_MIDDLEWARE]
        if route.strip_prefix and route.path_prefix != "/":
            strip = f"{route.name}-strip"
            middlewares[strip] = {"stripPrefix": {"prefixes": [route.path_prefix]}}
            chain.append(strip)
        routers[route.name] = {
            "rule": _rule(route.path_prefix),
            "service": route.name,
            "entryPoints": ["web"],
            "middlewares": chain,
        }
        balancer: dict[str, Any] = {
            "servers": [{"url": upstream} for upstream in route.upstreams],
            "passHostHeader": True,
        }
        if route.health_path:
            balancer["healthCheck"] = {
                "path": route.health_path,
                "interval": go_duration(options.health_interval_s),
                "timeout": go_duration(options.health_timeout_s),
            }
        services[route.name] = {"loadBalancer": balancer}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def render_static(options: GatewayOptions) -> dict[str, Any]:
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": host_port(options.listen_host, options.port)},
            "traefik": {"address": host_port("127.0.0.1", options.admin_port)},
        },
        "providers": {
            "file": {"directory": str(options.traefik_dynamic_dir), "watch": True},
        },
        "api": {"dashboard": True},
        "ping": {"entryPoint": "traefik"},
        "log": {"level": "INFO"},
        "accessLog": {},
    }


def argv(options: GatewayOptions) -> list[str]:
    return ["traefik", f"--configFile={options.traefik_static}"]
