"""The gateway as a container (docker runtime): its Caddy config with container upstreams.

Routes name host upstreams (``http://127.0.0.1:5000``). Inside the gateway container 127.0.0.1
is the container itself, so every upstream whose port a container unit publishes on the host
(``Ports=127.0.0.1:5000:5000``) is rewritten to that unit's network alias and container port
(``model-service:5000``, on llm-network). The gateway container listens on
:data:`CONTAINER_PORT` (published as ``BIND_ADDRESS:GATEWAY_PORT``: no capability is needed for
port 80 inside) and reads ``STATE_DIR/gateway/docker/caddy.json`` (mounted read-only, reloaded
by ``caddy run --watch``); its admin API is a socket inside the container only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llm_supervisor.core import nofollow
from llm_supervisor.gateway import caddy
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route
from llm_supervisor.units.container_values import SpecError, parse_port

CONTAINER_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def published_ports(units: Iterable[Any]) -> dict[int, tuple[str, int]]:
    """Host port → (network alias, container port) for the given container units."""
    result: dict[int, tuple[str, int]] = {}
    for unit in units:
        spec = getattr(unit, "container", None)
        if spec is None:
            continue
        for text in spec.ports:
            try:
                port = parse_port(text)
            except SpecError:
                continue
            host = port.host_port if port.host_port else port.container_port
            result[int(host)] = (unit.short_name, int(port.container_port))
    return result


def container_upstream(upstream: str, published: Mapping[int, tuple[str, int]]) -> str:
    parts = urlsplit(upstream)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if (parts.hostname or "") in LOOPBACK and port in published:
        alias, container_port = published[port]
        return f"{parts.scheme}://{alias}:{container_port}"
    return upstream


def container_routes(routes: Iterable[Route], published: Mapping[int, tuple[str, int]]
                     ) -> list[Route]:
    return [dataclasses.replace(route, upstreams=tuple(
        container_upstream(u, published) for u in route.upstreams)) for route in routes]


def config_path(options: GatewayOptions) -> Path:
    return options.directory / "docker" / "caddy.json"


def render(routes: list[Route], options: GatewayOptions) -> dict[str, Any]:
    inside = dataclasses.replace(options, listen_host="0.0.0.0", port=CONTAINER_PORT)
    config = caddy.render(routes, inside)
    config["admin"] = {"listen": "unix//tmp/caddy-admin.sock", "config": {"persist": False}}
    return config


def write(routes: list[Route], options: GatewayOptions,
          published: Mapping[int, tuple[str, int]]) -> bool:
    """Write the container's config (world-readable: the container runs as uid 10001; routes
    are not secret). True when it changed."""
    path = config_path(options)
    text = json.dumps(render(container_routes(routes, published), options), indent=2) + "\n"
    # STATE_DIR/gateway belongs to the unit user: reach docker/ and the file by descriptor,
    # never through a link planted there (core/nofollow.py).
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    fd = nofollow.open_dir_path(path.parent, 0o755)
    try:
        os.fchmod(fd, 0o755)
        if nofollow.read_file_at(fd, path.name) == text.encode():
            return False
        nofollow.write_file_at(fd, path.name, text.encode(), 0o644)
        return True
    finally:
        os.close(fd)
