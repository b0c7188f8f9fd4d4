"""What the running gateway itself says about its routes: Traefik's API, Caddy's admin API.

Exposed in the control API's ``GET /gateway`` (``live``) for ``monitor --network``, ``status``
and the dashboard. Traefik: every router's status and every service's servers ``UP``/``DOWN``
from ``/api/http/routers`` and ``/api/http/services`` on its loopback API entry point. Caddy:
``/reverse_proxy/upstreams`` on its admin socket (requests in flight and failures per upstream;
Caddy 2.6 does not publish the active check's verdict there).
"""

from __future__ import annotations

from typing import Any

import httpx

from llm_supervisor.gateway.caddy import ADMIN_HEADERS
from llm_supervisor.gateway.options import GatewayOptions

TIMEOUT_S = 2.0


def _traefik_summary(routers: list[dict[str, Any]], services: list[dict[str, Any]]
                     ) -> dict[str, Any]:
    return {
        "routers": {r["name"]: {"status": r.get("status"), "rule": r.get("rule"),
                                "service": r.get("service"), "entry_points": r.get("entryPoints"),
                                "error": r.get("error")}
                    for r in routers},
        "services": {s["name"]: {"status": s.get("status"),
                                 "servers": s.get("serverStatus", {})}
                     for s in services if s.get("provider") != "internal"},
    }


async def traefik_state(options: GatewayOptions) -> dict[str, Any]:
    """Routers and services as the running Traefik has them; ``error`` when it cannot answer."""
    try:
        async with httpx.AsyncClient(base_url=options.admin_url, timeout=TIMEOUT_S) as client:
            routers = (await client.get("/api/http/routers")).raise_for_status().json()
            services = (await client.get("/api/http/services")).raise_for_status().json()
            version = (await client.get("/api/version")).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"Traefik's API at {options.admin_url} did not answer: {exc}"}
    return {"version": version.get("Version"), **_traefik_summary(routers, services)}


async def caddy_state(options: GatewayOptions) -> dict[str, Any]:
    transport = httpx.AsyncHTTPTransport(uds=str(options.admin_socket))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     timeout=TIMEOUT_S) as client:
            response = await client.get("/reverse_proxy/upstreams", headers=ADMIN_HEADERS)
            upstreams = response.raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"Caddy's admin socket {options.admin_socket} did not answer: {exc}"}
    return {"upstreams": {u["address"]: {"in_flight": u.get("num_requests", 0),
                                         "fails": u.get("fails", 0)} for u in upstreams or []}}


async def gateway_state(program: str, options: GatewayOptions) -> dict[str, Any]:
    if program == "traefik":
        return await traefik_state(options)
    return await caddy_state(options)
