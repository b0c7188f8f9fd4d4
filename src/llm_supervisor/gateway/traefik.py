"""Traefik as the gateway: a static config file plus file-provider dynamic config.

Static (``traefik.yml``): entry point ``web`` on BIND_ADDRESS:GATEWAY_PORT, entry point
``traefik`` on 127.0.0.1:GATEWAY_ADMIN_PORT for the API/dashboard (secure mode: ``api@internal``
is reachable only through a router on that loopback entry point, never ``api.insecure``), and
the file provider watching ``dynamic/``, so rewriting ``dynamic/routes.yml`` is the reload.

Dynamic (``dynamic/routes.yml``): per route one router (``PathPrefix``; Traefik's default
priority is the rule length, so ``/api`` wins over ``/``), one service with a loadBalancer, its
servers and a ``healthCheck``, a shared ``retry`` middleware, and a ``stripPrefix`` middleware
only for routes that ask for it.

Replicas: the health check asks ``HealthPath?require=ready``, which the model server answers 503
unless its status is ``ready`` (a draining or loading replica leaves the rotation): the same
condition as Caddy's ``expect_body`` (Traefik cannot match a body). Responses are flushed at once
(``flushInterval: -1``), so streamed tokens (SSE) are never held in a buffer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from llm_supervisor.gateway.options import GatewayOptions, go_duration, host_port
from llm_supervisor.gateway.routes import Route

RETRY_MIDDLEWARE = "llm-supervisor-retry"
DASHBOARD_ROUTER = "llm-supervisor-dashboard"
API_KEY_MIDDLEWARE = "llm-supervisor-api-key"
TRANSPORT = "llm-supervisor"
# An upstream that does not answer a connection within this long counts as down (a retry, then
# 502), instead of Go's default 30 s dial timeout.
DIAL_TIMEOUT = "2s"


def ready_path(health_path: str) -> str:
    """``/api/health`` → ``/api/health?require=ready`` (other query parameters kept)."""
    parts = urlsplit(health_path)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "require"] + [("require", "ready")]
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


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
    if options.auth_url:
        # Traefik sends the client's headers (Authorization) to the check; a non-2xx answer
        # (401 JSON) goes back to the client unchanged.
        middlewares[API_KEY_MIDDLEWARE] = {"forwardAuth": {"address": options.auth_url}}
    for route in routes:
        chain = [API_KEY_MIDDLEWARE] if route.guarded and options.auth_url else []
        chain.append(RETRY_MIDDLEWARE)
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
            "serversTransport": TRANSPORT,
            "responseForwarding": {"flushInterval": "-1ms"},
        }
        if route.health_path:
            replicas = len(route.upstreams) > 1
            balancer["healthCheck"] = {
                "path": ready_path(route.health_path) if replicas else route.health_path,
                "interval": go_duration(options.replica_health_interval_s if replicas
                                       else options.health_interval_s),
                # A server marked down is re-checked this often: back in rotation within
                # half a second of being ready (e.g. after the model loaded).
                "unhealthyInterval": go_duration(options.unhealthy_interval_s),
                "timeout": go_duration(options.health_timeout_s),
            }
        services[route.name] = {"loadBalancer": balancer}
    transports = {TRANSPORT: {"forwardingTimeouts": {"dialTimeout": DIAL_TIMEOUT}}}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares,
                     "serversTransports": transports}}


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
        "log": {"level": "INFO", "noColor": True},
        "accessLog": {},
    }


def argv(options: GatewayOptions) -> list[str]:
    return ["traefik", f"--configFile={options.traefik_static}"]
