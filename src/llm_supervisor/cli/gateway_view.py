"""How the CLI names the gateway and shows its own view of each upstream, from ``GET /gateway``."""

from __future__ import annotations

from urllib.parse import urlsplit

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any


def gateway_line(gateway: dict[str, Any]) -> str:
    """``traefik 3.7.15`` (``caddy 2.6.2``); ``?`` when the version is unknown."""
    program = gateway.get("program") or "?"
    return f"{program} {gateway.get('version') or '?'}"


def gateway_summary(gateway: dict[str, Any]) -> str:
    """``traefik 3.7.15 (dashboard http://127.0.0.1:8081/dashboard/)``."""
    admin = gateway.get("admin_url")
    extra = f" (dashboard {admin}/dashboard/)" if gateway.get("program") == "traefik" and admin \
        else ""
    return gateway_line(gateway) + extra


def gateway_title(gateway: dict[str, Any], url: str) -> str:
    summary = gateway_summary(gateway)
    program, _, extra = summary.partition(" (")
    return f"gateway {program} {url}" + (f"  ({extra}" if extra else "")


def gateway_view(gateway: dict[str, Any], route: dict[str, Any], upstream: str) -> str:
    """What the running gateway says about ``upstream``: Traefik ``UP``/``DOWN`` from its health
    check; Caddy requests in flight and failures; ``-`` when it did not say."""
    live = gateway.get("live") or {}
    if "error" in live:
        return "no answer"
    if gateway.get("program") == "traefik":
        service = (live.get("services") or {}).get(f"{route.get('name')}@file") or {}
        return str((service.get("servers") or {}).get(upstream, "-"))
    parts = urlsplit(upstream)
    entry = (live.get("upstreams") or {}).get(f"{parts.hostname}:{parts.port}")
    if not entry:
        return "-"
    return f"{entry['in_flight']} in flight, {entry['fails']} fails"


def gateway_footer(client: Any, units: list[dict[str, Any]]) -> str | None:
    """The line ``status`` prints under the table when the stack has a gateway unit."""
    if not any(str(u.get("name", "")).split("@")[0] == "gateway" for u in units):
        return None
    try:
        gateway = client.get("/gateway", params={"live": "0"})
    except Exception:  # an older daemon, or no gateway plugin: the table says enough
        return None
    return gateway_title(gateway, gateway.get("url") or "?")
