"""What the dashboard shows, as JSON (``/api/units``, ``/api/overview`` and the page's live
``snapshot`` events): built from the supervisor's own state (its :class:`SupervisorView`),
never from a second copy of it."""

from __future__ import annotations

from typing import Any

from llm_supervisor.plugins.view import SupervisorView


def units(supervisor: SupervisorView) -> list[dict[str, Any]]:
    return supervisor.statuses()


def gateway_routes(supervisor: SupervisorView) -> list[dict[str, Any]]:
    """The gateway's routes (``gateway_info`` hook) with the health of each upstream unit."""
    info = supervisor.gateway_info() or {}
    health = {status["unit"]: status["health"] for status in supervisor.statuses()}
    result = []
    for route in info.get("routes") or []:
        data = dict(route)
        data["healthy"] = [health[name] for name in data.get("units", []) if name in health]
        result.append(data)
    return result


def links(supervisor: SupervisorView) -> dict[str, str]:
    settings = supervisor.settings
    host = "127.0.0.1" if settings.bind_address in ("0.0.0.0", "::", "") else \
        settings.bind_address
    found = {"gateway": f"http://{host}:{settings.gateway_port}/",
             "novnc": f"http://{host}:{settings.novnc_port}/vnc.html?autoconnect=1&resize=scale"}
    if settings.resolved_gateway_program == "traefik":
        found["gateway_admin"] = f"http://127.0.0.1:{settings.gateway_admin_port}/dashboard/"
    return found


def overview(supervisor: SupervisorView, model: dict[str, Any], logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": model, "routes": gateway_routes(supervisor), "links": links(supervisor),
            "logs": logs}


def full(supervisor: SupervisorView, model: dict[str, Any], logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"units": units(supervisor), **overview(supervisor, model, logs)}
