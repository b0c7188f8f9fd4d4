"""The gateway as a container (docker runtime): its Traefik and Caddy config with container
upstreams.

Routes name host upstreams (``http://127.0.0.1:5000``). Inside the gateway container 127.0.0.1
is the container itself, so every upstream whose port a container unit publishes on the host
(``Ports=127.0.0.1:5000:5000``) is rewritten to that unit's network alias and container port
(``model-service:5000``, on llm-network). The gateway container listens on
:data:`CONTAINER_PORT` (published as ``BIND_ADDRESS:GATEWAY_PORT``: no capability is needed for
port 80 inside) and reads ``STATE_DIR/gateway/docker`` (mounted read-only at /etc/llm-gateway):
Traefik's ``traefik/traefik.yml`` with the file provider watching ``traefik/dynamic/``, its API
and dashboard on :data:`ADMIN_CONTAINER_PORT` (published on the host's 127.0.0.1 only), or
``caddy.json`` (reloaded by ``caddy run --watch``; its admin API is a socket inside the
container only).

API keys are not enforced by the gateway container: the key check runs in the daemon on the
host's loopback, which a container on llm-network cannot reach. The daemon logs a warning when
keys would be required (docs/gateway.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from llm_supervisor.core import nofollow
from llm_supervisor.gateway import caddy, traefik
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route
from llm_supervisor.units.container_values import SpecError, parse_port

CONTAINER_PORT = 8000
ADMIN_CONTAINER_PORT = 8081
MOUNT = "/etc/llm-gateway"
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
    config = caddy.render(routes, inside_options(options))
    config["admin"] = {"listen": "unix//tmp/caddy-admin.sock", "config": {"persist": False}}
    return config


def inside_options(options: GatewayOptions) -> GatewayOptions:
    """Listening on all of the container's interfaces; paths as mounted; no key check."""
    return dataclasses.replace(options, listen_host="0.0.0.0", port=CONTAINER_PORT,
                               admin_port=ADMIN_CONTAINER_PORT, auth_url=None)


def render_traefik_static(options: GatewayOptions) -> dict[str, Any]:
    static = traefik.render_static(inside_options(options))
    # The API entry point listens inside the container; only the host's loopback publishes it.
    static["entryPoints"]["traefik"]["address"] = f"0.0.0.0:{ADMIN_CONTAINER_PORT}"
    static["providers"]["file"]["directory"] = f"{MOUNT}/traefik/dynamic"
    return static


def write(routes: list[Route], options: GatewayOptions,
          published: Mapping[int, tuple[str, int]]) -> bool:
    """Write the container's config, both gateways' (world-readable: the container runs as uid
    10001; routes are not secret). True when the Caddy config changed."""
    path = config_path(options)
    inside = container_routes([dataclasses.replace(r, guarded=False) for r in routes], published)
    text = json.dumps(render(inside, options), indent=2) + "\n"
    static = yaml.safe_dump(render_traefik_static(options), sort_keys=False)
    dynamic = yaml.safe_dump(traefik.render_dynamic(inside, inside_options(options)),
                             sort_keys=False)
    # STATE_DIR/gateway belongs to the unit user: reach docker/ and each file by descriptor,
    # never through a link planted there (core/nofollow.py). Each file is replaced atomically
    # (a temporary ``.tmp`` name, which Traefik's file provider ignores, renamed over it).
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    fd = nofollow.open_dir_path(path.parent, 0o755)
    try:
        os.fchmod(fd, 0o755)
        changed = _write_if_changed_at(fd, path.name, text)
        traefik_fd = nofollow.open_child_dir(fd, "traefik", 0o755)
        try:
            os.fchmod(traefik_fd, 0o755)
            _write_if_changed_at(traefik_fd, "traefik.yml", static)
            dynamic_fd = nofollow.open_child_dir(traefik_fd, "dynamic", 0o755)
            try:
                os.fchmod(dynamic_fd, 0o755)
                _write_if_changed_at(dynamic_fd, "routes.yml", dynamic)
            finally:
                os.close(dynamic_fd)
        finally:
            os.close(traefik_fd)
        return changed
    finally:
        os.close(fd)


def _write_if_changed_at(dir_fd: int, name: str, text: str) -> bool:
    data = text.encode()
    if nofollow.read_file_at(dir_fd, name) == data:
        return False
    nofollow.write_file_at(dir_fd, name, data, 0o644)
    return True
