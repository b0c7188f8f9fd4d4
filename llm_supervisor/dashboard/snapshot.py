"""What the dashboard shows, as JSON (``/api/units``, ``/api/overview`` and the page's live
``snapshot`` events): built from the manager's own state, never from a second copy of it."""

from __future__ import annotations

from typing import Any

GATEWAY_PLUGIN = "llm_supervisor.plugins.builtin.gateway"


def units(manager: Any) -> list[dict[str, Any]]:
    return manager.status()


def gateway_routes(manager: Any) -> list[dict[str, Any]]:
    plugins = getattr(manager, "plugins", None)
    plugin = plugins.get_plugin(GATEWAY_PLUGIN) if plugins is not None else None
    routes = getattr(plugin, "routes", None) or []
    by_unit = {runner.name: runner for runner in manager.runners.values()}
    result = []
    for route in routes:
        data = route.as_dict()
        data["healthy"] = [str(by_unit[name].health) for name in data.get("units", [])
                           if name in by_unit]
        result.append(data)
    return result


def links(manager: Any) -> dict[str, str]:
    settings = manager.settings
    host = "127.0.0.1" if settings.bind_address in ("0.0.0.0", "::", "") else \
        settings.bind_address
    found = {"gateway": f"http://{host}:{settings.gateway_port}/",
             "novnc": f"http://{host}:{settings.novnc_port}/vnc.html?autoconnect=1&resize=scale"}
    if settings.resolved_gateway_program == "traefik":
        found["gateway_admin"] = f"http://127.0.0.1:{settings.gateway_admin_port}/dashboard/"
    return found


def overview(manager: Any, model: dict[str, Any], logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": model, "routes": gateway_routes(manager), "links": links(manager),
            "logs": logs}


def full(manager: Any, model: dict[str, Any], logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"units": units(manager), **overview(manager, model, logs)}
