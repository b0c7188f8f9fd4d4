"""Gateway routes: what the units' ``[Route]`` sections (and plugins) ask the gateway to serve.

One :class:`Route` per path prefix. Instances of a template unit (``model-service@1``,
``model-service@2``) that declare the same prefix become one route with several upstreams, which
the gateway load-balances.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger("llm_supervisor.gateway")

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Route:
    """``path_prefix`` → ``upstreams`` (``http://host:port`` URLs, no path).

    ``strip_prefix`` removes the prefix before proxying. Default False: the model service serves
    ``/api/...`` itself, so ``/api`` must reach it unchanged.
    """

    name: str
    path_prefix: str
    upstreams: tuple[str, ...]
    health_path: str | None = None
    strip_prefix: bool = False
    units: tuple[str, ...] = field(default=(), compare=False)
    # Requests must carry an API key (gateway/guard.py); set only when keys are enforced.
    guarded: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path_prefix": self.path_prefix, "upstreams": list(self.upstreams),
                "health_path": self.health_path, "strip_prefix": self.strip_prefix,
                "units": list(self.units), "guarded": self.guarded}


def route_name(unit_name: str) -> str:
    """``model-service@2.service`` → ``model-service``: a name valid in Caddy and Traefik."""
    base = unit_name.rsplit(".", 1)[0].split("@", 1)[0]
    return _NAME_CHARS.sub("-", base).strip("-") or "route"


def _origin(url: str) -> str | None:
    """``http://127.0.0.1:5000/x`` → ``http://127.0.0.1:5000``; None when it is not http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _upstream_of(unit: Any) -> str | None:
    """``Upstream=``, else the origin of an ``http://`` health check."""
    route = unit.route
    if route.upstream:
        return _origin(route.upstream)
    health = getattr(unit, "health", None)
    if health is not None and health.kind == "http":
        return _origin(health.target)
    return None


def routes_from_units(units: Iterable[Any]) -> list[dict[str, Any]]:
    """Route dicts (the ``gateway_routes`` hook format) for every unit with a ``[Route]``."""
    found = []
    for unit in units:
        if getattr(unit, "route", None) is None:
            continue
        upstream = _upstream_of(unit)
        if upstream is None:
            log.warning("route_without_upstream", unit=unit.name, path_prefix=unit.route.path_prefix,
                        hint="set [Route] Upstream=http://HOST:PORT")
            continue
        found.append({"name": route_name(unit.name), "path_prefix": unit.route.path_prefix,
                      "upstreams": [upstream], "health_path": unit.route.health_path,
                      "strip_prefix": unit.route.strip_prefix, "unit": unit.name})
    return found


def normalise_prefix(prefix: str) -> str:
    """``/api/`` → ``/api``; ``/`` stays ``/``."""
    cleaned = "/" + prefix.strip().strip("/")
    return cleaned


def merge_routes(contributions: Iterable[Iterable[Mapping[str, Any]] | None]) -> list[Route]:
    """Merge the routes every plugin returned: one :class:`Route` per prefix, upstreams joined.

    Sorted longest prefix first (the order both gateways must try them in); conflicting options
    for one prefix keep the first contributor's and are logged.
    """
    by_prefix: dict[str, dict[str, Any]] = {}
    for contribution in contributions:
        for item in contribution or ():
            prefix = normalise_prefix(str(item["path_prefix"]))
            upstreams = [u for u in (_origin(str(x)) for x in item.get("upstreams", ())) if u]
            if not upstreams:
                continue
            unit = item.get("unit")
            current = by_prefix.get(prefix)
            if current is None:
                by_prefix[prefix] = {
                    "name": route_name(str(item.get("name") or prefix)),
                    "upstreams": list(dict.fromkeys(upstreams)),
                    "health_path": item.get("health_path"),
                    "strip_prefix": bool(item.get("strip_prefix", False)),
                    "units": [unit] if unit else [],
                }
                continue
            for upstream in upstreams:
                if upstream not in current["upstreams"]:
                    current["upstreams"].append(upstream)
            if unit:
                current["units"].append(unit)
            if bool(item.get("strip_prefix", False)) != current["strip_prefix"]:
                log.warning("route_conflict", path_prefix=prefix, unit=unit,
                            kept_strip_prefix=current["strip_prefix"])
    routes = []
    names: set[str] = set()
    for prefix, data in by_prefix.items():
        name = data["name"]
        suffix = 2
        while name in names:  # two prefixes from units with the same base name
            name = f"{data['name']}-{suffix}"
            suffix += 1
        names.add(name)
        routes.append(Route(name=name, path_prefix=prefix, upstreams=tuple(data["upstreams"]),
                            health_path=data["health_path"], strip_prefix=data["strip_prefix"],
                            units=tuple(data["units"])))
    routes.sort(key=lambda r: (-len(r.path_prefix.rstrip("/")), r.path_prefix))
    return routes


def serving_or_all(all_routes: Iterable[Route], serving: Iterable[Route]) -> list[Route]:
    """Per prefix, the route made from the units in rotation (ready, not being drained) when there
    is one, else the route with every unit's upstream: a prefix whose units are all down keeps
    its route, so requests wait for them (``try_duration``) instead of getting 404."""
    by_prefix = {route.path_prefix: route for route in serving}
    return [by_prefix.get(route.path_prefix, route) for route in all_routes]
