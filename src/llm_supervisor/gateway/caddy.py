"""Caddy (Debian package ``caddy``) as the gateway: native JSON config and its admin API.

JSON rather than a Caddyfile: it is what the admin API's ``POST /load`` takes, needs no adapter,
and cannot be broken by quoting. Each route is one ``reverse_proxy`` with active health checks
(the unit's ``HealthPath``) and ``try_duration``, so a request that arrives while its upstream
restarts waits for it (up to ``try_duration``) instead of failing at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from llm_supervisor.gateway.options import GatewayOptions, go_duration, host_port
from llm_supervisor.gateway.routes import Route

READY_BODY = '"status":\\s*"ready"'


def _path_matcher(prefix: str) -> list[dict[str, Any]]:
    """``/api`` matches ``/api`` and ``/api/...`` but not ``/apifoo``; ``/`` matches all."""
    if prefix == "/":
        return []
    return [{"path": [prefix, f"{prefix}/*"]}]


def _dial(upstream: str) -> dict[str, Any]:
    parts = urlsplit(upstream)
    return {"dial": host_port(parts.hostname or "127.0.0.1", parts.port or 80)}


def _proxy(route: Route, options: GatewayOptions) -> dict[str, Any]:
    handler: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [_dial(u) for u in route.upstreams],
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            "try_duration": go_duration(options.try_duration_s),
            "try_interval": go_duration(options.try_interval_s),
        },
        # Server-sent events (streamed /api/generate) must not sit in a buffer.
        "flush_interval": -1,
        # Without a buffered body, a POST retried after a dial error (the upstream restarting)
        # fails with 502 "invalid Read on closed Body" (caddyserver/caddy#7546, fixed only in
        # releases newer than Debian's 2.6.2). Request bodies here are small JSON documents.
        "buffer_requests": True,
    }
    if any(urlsplit(u).scheme == "https" for u in route.upstreams):
        handler["transport"] = {"protocol": "http", "tls": {}}
    if route.health_path:
        handler["health_checks"] = {
            "active": {
                "uri": route.health_path,
                "interval": go_duration(options.health_interval_s),
                "timeout": go_duration(options.health_timeout_s),
            },
        }
    if len(route.upstreams) > 1:
        # Replicas. The config stays the same through a rolling restart (Caddy 2.6 cancels the
        # requests in flight on every config load): a replica leaves the rotation through the
        # active check, which wants "ready" in the body (a draining server answers 200
        # "draining", so the supervisor does not restart it), every second.
        if route.health_path:
            active = handler["health_checks"]["active"]
            active["interval"] = go_duration(options.replica_health_interval_s)
            active["expect_body"] = READY_BODY
        # A replica that refuses a connection or answers 502-504 is skipped for a while,
        # between two active checks (a single upstream keeps today's plain config).
        handler.setdefault("health_checks", {})["passive"] = {
            "fail_duration": go_duration(options.passive_fail_duration_s),
            "max_fails": 1,
            "unhealthy_status": [502, 503, 504],
        }
    return handler


def forward_auth(auth_url: str) -> dict[str, Any]:
    """Caddy's ``forward_auth`` directive in JSON: ask the API-key check with the client's
    headers; a 2xx answer continues to the next handler (the proxy), anything else (401 JSON)
    is the response."""
    parts = urlsplit(auth_url)
    return {
        "handler": "reverse_proxy",
        "upstreams": [_dial(auth_url)],
        "rewrite": {"method": "GET", "uri": parts.path or "/"},
        "headers": {"request": {"set": {"X-Forwarded-Method": ["{http.request.method}"],
                                        "X-Forwarded-Uri": ["{http.request.uri}"]}}},
        "handle_response": [{"match": {"status_code": [2]},
                             "routes": [{"handle": [{"handler": "vars"}]}]}],
    }


def render(routes: list[Route], options: GatewayOptions) -> dict[str, Any]:
    """The complete Caddy config (``caddy run --config caddy.json``)."""
    caddy_routes = []
    for route in routes:  # already longest prefix first
        handle: list[dict[str, Any]] = []
        if route.guarded and options.auth_url:
            handle.append(forward_auth(options.auth_url))
        if route.strip_prefix and route.path_prefix != "/":
            handle.append({"handler": "rewrite", "strip_path_prefix": route.path_prefix})
        handle.append(_proxy(route, options))
        entry: dict[str, Any] = {"@id": f"route-{route.name}", "handle": handle, "terminal": True}
        matcher = _path_matcher(route.path_prefix)
        if matcher:
            entry["match"] = matcher
        caddy_routes.append(entry)
    return {
        "admin": {
            "listen": f"unix/{options.admin_socket}",
            # Never write an autosave copy to ~/.config: the daemon owns the config.
            "config": {"persist": False},
        },
        "logging": {"logs": {"default": {"level": "INFO"}}},
        "apps": {
            "http": {
                "servers": {
                    "gateway": {
                        "listen": [host_port(options.listen_host, options.port)],
                        "routes": caddy_routes,
                        "automatic_https": {"disable": True},
                        "logs": {},
                    }
                }
            }
        },
    }


def argv(options: GatewayOptions) -> list[str]:
    return ["caddy", "run", "--config", str(options.caddy_config)]


# Caddy allows only an empty Host header on a Unix-socket admin API (RFC 7230: no host name).
ADMIN_HEADERS = {"Host": ""}


async def load(config: dict[str, Any], options: GatewayOptions, timeout: float = 5.0) -> None:
    """Hand a running Caddy its new config (``POST /load`` on the admin socket); raises httpx
    errors when none runs.

    Caddy applies it gracefully: listeners stay open and in-flight requests finish.
    """
    import httpx  # imported here: the launcher imports this module and must start fast

    transport = httpx.AsyncHTTPTransport(uds=str(options.admin_socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                 timeout=timeout) as client:
        response = await client.post("/load", json=config, headers=ADMIN_HEADERS)
        response.raise_for_status()
