"""A neutral description of the stack for cluster engines, built from the parsed units.

Units → :class:`Stack`: one :class:`Service` per unit that can run as a container, the routes
of every ``[Route]`` resolved to the service that answers them, and what was left out with the
reason. ``kubernetes`` and ``compose`` turn a Stack into manifests; neither reads unit files.

Host-side facts become cluster facts here: a health check against a published host port probes
the container port, the host's MODEL_PATH becomes the shared model volume, a loopback-only port
(``127.0.0.1:5000:5000``) stays inside the cluster network.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from llm_supervisor.units.container_values import SpecError, parse_memory, parse_port, parse_volume
from llm_supervisor.units.loader import LoadResult
from llm_supervisor.units.model import Unit, split_template

MODEL_SERVICE = "model-service"
GATEWAY = "gateway"
GATEWAY_UNIT = "gateway.service"  # as plugins/builtin/gateway.py names it
MODEL_VOLUME = "models"
# The noVNC test desktop stays with llm-supervisord (issue 13): it is a local test tool.
TEST_DESKTOP_UNITS = (
    "xvfb.service", "x11vnc.service", "novnc.service", "browser.service",
    "novnc-container.service", "browser-container.service",
)
DAEMON_ONLY = (
    "self-repair (model-repair plugin: verify weights against the manifest, re-fetch, restart): "
    "the cluster restarts a failing container but does not repair the model directory",
    "the noVNC test desktop (xvfb, x11vnc, novnc, browser): a local test tool",
    "the capped exponential back-off (RestartSec= to RestartMaxDelaySec=): each engine has its "
    "own",
)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Check:
    """A ``[Health]`` check as seen from inside the container."""

    kind: Literal["http", "tcp", "exec"]
    port: int | None = None
    path: str = "/"
    scheme: str = "http"
    command: tuple[str, ...] = ()
    interval: float = 2.0
    timeout: float = 1.0
    retries: int = 3
    start_period: float = 0.0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class Port:
    container_port: int
    protocol: str = "tcp"
    published: int | None = None
    loopback_only: bool = False  # published on 127.0.0.1 only here: not published in a cluster


@dataclass(frozen=True)
class Mount:
    source: str  # a host path, or a volume name (MODEL_VOLUME for the model directory)
    target: str
    read_only: bool
    kind: Literal["model", "volume", "bind"]


@dataclass(frozen=True)
class Route:
    path_prefix: str
    service: str
    port: int
    declared_by: str  # the unit whose [Route] this is
    strip_prefix: bool = False


@dataclass
class Service:
    name: str  # a DNS label (Kubernetes and swarm service names)
    unit: str
    description: str
    image: str
    build_context: Path | None = None
    dockerfile: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    # Values kept out of the manifests (export/secret_env.py): a Secret, or a 0600 env file.
    secret_environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[str] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    check: Check | None = None
    start_timeout: float = 90.0
    stop_timeout: float = 10.0
    stop_signal: str = "SIGTERM"
    replicas: int = 1
    restart: str = "on-failure"
    restart_sec: float = 1.0
    start_limit_burst: int = 5
    start_limit_interval: float = 60.0
    depends_on: list[str] = field(default_factory=list)
    memory_bytes: int | None = None
    cpus: float | None = None
    gpus: int | Literal["all"] | None = None
    user: str | None = None
    capabilities: list[str] = field(default_factory=list)
    working_dir: str | None = None

    @property
    def is_model_service(self) -> bool:
        return self.name == MODEL_SERVICE


@dataclass
class Stack:
    services: list[Service] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (unit, reason)
    notes: list[str] = field(default_factory=list)  # mapped approximately, or not at all
    model_dir: Path | None = None
    # The gateway unit's image and health when it has a [Container]: the compose export's
    # gateway runs it with a config made from the routes (Kubernetes has the Ingress instead).
    gateway: Service | None = None
    gateway_image: str | None = None  # --image gateway=...

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)


class ExportError(ValueError):
    """The units cannot be exported as they are; the message says what to fix."""


def dns_label(name: str) -> str:
    """``model-service@2`` → ``model-service-2``: lower case, letters, digits and ``-``, at most
    63 characters, starting with a letter (RFC 1035, as Kubernetes Service names need)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    label = re.sub(r"^[^a-z]+", "", label)[:63].rstrip("-")
    if not label:
        raise ExportError(f"{name!r} gives no usable service name (it needs a letter)")
    return label


def build_stack(result: LoadResult, *, model_dir: Path, project_dir: Path, replicas: int = 1,
                images: Mapping[str, str] | None = None, image_prefix: str = "llm-supervisord/",
                include_desktop: bool = False) -> Stack:
    """The Stack for the loaded units. ``replicas`` is the model service's count; ``images``
    overrides images by service name (``model-service=registry/model:1``)."""
    if replicas < 1:
        raise ExportError(f"--replicas must be at least 1 (got {replicas})")
    images = dict(images or {})
    stack = Stack(model_dir=model_dir)
    families: dict[str, list[Unit]] = {}
    for unit in sorted(result.units.values(), key=lambda u: u.name):
        if not unit.is_service:
            continue
        if unit.name == GATEWAY_UNIT:
            stack.skipped.append((unit.name, "the gateway: the [Route] sections become the Ingress "
                                             "(kubernetes) or the generated gateway (compose)"))
            if _skip_reason(unit, True) is None:
                stack.gateway = _service(unit, GATEWAY, 1, model_dir, project_dir, None,
                                         image_prefix, [])
            continue
        reason = _skip_reason(unit, include_desktop)
        if reason:
            stack.skipped.append((unit.name, reason))
            continue
        families.setdefault(_family(unit), []).append(unit)
    for template in sorted(result.templates):
        family = template.split("@", 1)[0]
        if family not in families and template.endswith(".service"):
            stack.skipped.append((template, "a template no unit names an instance of"))
    for family, units in families.items():
        unit = units[0]
        name = dns_label(family)
        count = replicas if name == MODEL_SERVICE else len(units)
        stack.services.append(_service(unit, name, count, model_dir, project_dir,
                                       images.pop(name, None), image_prefix, stack.notes))
    stack.gateway_image = images.pop(GATEWAY, None)
    if images:
        raise ExportError(f"--image names no exported service: {', '.join(sorted(images))} "
                          f"(services: {', '.join(s.name for s in stack.services)})")
    names = {s.unit: s.name for s in stack.services}
    for service in stack.services:
        unit = result.units[service.unit]
        service.depends_on = sorted({names[d] for d in (*unit.after, *unit.requires)
                                     if d in names and names[d] != service.name})
    stack.routes = _routes(result, stack)
    return stack


def _family(unit: Unit) -> str:
    if unit.instance is None and "@" in unit.name:  # a catalog model: its own service
        return unit.short_name.replace("@", "-")
    parts = split_template(unit.name)
    return parts[0].split("@", 1)[0] if parts else unit.short_name


def _skip_reason(unit: Unit, include_desktop: bool) -> str | None:
    if unit.name in TEST_DESKTOP_UNITS and not include_desktop:
        return "the test desktop stays with llm-supervisord (--include-desktop exports it)"
    container = unit.container
    if container is None or not (container.image or container.build):
        return (f"Runtime={unit.runtime or 'process'} and no [Container] Image=/Build=: "
                "it runs only as a local process")
    return None


def _service(unit: Unit, name: str, replicas: int, model_dir: Path, project_dir: Path,
             image: str | None, image_prefix: str, notes: list[str]) -> Service:
    spec = unit.container
    assert spec is not None
    where = f"{unit.path}: [Container]"
    try:
        ports = [parse_port(text) for text in spec.ports]
        volumes = [parse_volume(text, project_dir) for text in spec.volumes]
        memory = int(parse_memory(spec.memory)) if spec.memory else None
    except SpecError as exc:
        raise ExportError(f"{unit.path}: {exc}") from None
    build = None
    if spec.build:
        build = Path(spec.build).expanduser()
        build = build if build.is_absolute() else (project_dir / build).resolve()
    service = Service(
        name=name, unit=unit.name, description=unit.description,
        image=image or spec.image or f"{image_prefix}{name}:latest",
        build_context=build, dockerfile=spec.dockerfile if build else None,
        build_args=dict(spec.build_args),
        command=spec.command, environment=dict(unit.environment),
        environment_files=[path for path, _optional in unit.environment_files],
        ports=[Port(p.container_port, p.protocol, p.host_port if p.host_port else p.container_port,
                    p.host_ip in LOOPBACK) for p in ports],
        mounts=[_mount(v.source, v.target, v.mode == "ro", v.named, model_dir) for v in volumes],
        start_timeout=unit.timeout_start_sec, stop_timeout=unit.timeout_stop_sec,
        stop_signal=_signal_name(unit.kill_signal), replicas=replicas, restart=unit.restart,
        restart_sec=unit.restart_sec, start_limit_burst=unit.start_limit_burst,
        start_limit_interval=unit.start_limit_interval_sec, memory_bytes=memory, cpus=spec.cpus,
        gpus=_gpus(spec.gpus, where, notes), user=spec.user,
        capabilities=list(unit.ambient_capabilities), working_dir=unit.working_directory,
    )
    if unit.health is not None:
        service.check = _check(unit, service.ports)
    for mount in service.mounts:
        if mount.kind == "bind":
            notes.append(f"{name}: host path {mount.source} is mounted as it is (hostPath on "
                         "Kubernetes, a bind mount on swarm): it must exist on every node")
    return service


def _mount(source: str, target: str, read_only: bool, named: bool, model_dir: Path) -> Mount:
    if not named and Path(source).resolve() == model_dir.resolve():
        return Mount(MODEL_VOLUME, target, read_only, "model")
    return Mount(source, target, read_only, "volume" if named else "bind")


def _gpus(value: str | None, where: str, notes: list[str]) -> int | Literal["all"] | None:
    if not value:
        return None
    value = value.strip()
    if value == "all":
        return "all"
    if value.isdigit():
        return int(value)
    if value.startswith("device="):
        count = len([part for part in value.removeprefix("device=").split(",") if part])
        notes.append(f"{where} GPUs={value}: exported as a count of {count} (a cluster "
                     "schedules GPUs by number, not by device id)")
        return count
    raise ExportError(f"{where} GPUs: cannot parse {value!r} (all, a count, or device=0,1)")


def _check(unit: Unit, ports: list[Port]) -> Check:
    health = unit.health
    assert health is not None
    timing = {"interval": health.interval, "timeout": health.timeout, "retries": health.retries,
              "start_period": health.start_period}
    if health.kind == "exec":
        return Check("exec", command=tuple(shlex.split(health.target)), **timing)
    if health.kind == "tcp":
        _host, _, port_text = health.target.rpartition(":")
        return Check("tcp", port=_container_port(int(port_text), ports), **timing)
    parts = urlsplit(health.target)
    default = 443 if parts.scheme == "https" else 80
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Check("http", port=_container_port(parts.port or default, ports), path=path,
                 scheme=parts.scheme, **timing)


def _container_port(host_port: int, ports: list[Port]) -> int:
    """The daemon probes from the host: a check on a published port probes its container port."""
    return next((p.container_port for p in ports if p.published == host_port), host_port)


def _routes(result: LoadResult, stack: Stack) -> list[Route]:
    """Each ``[Route]`` (of any unit, exported or not) to the service that answers it: the unit
    itself, or the exported service publishing the Upstream='s port."""
    routes: list[Route] = []
    for unit in sorted(result.units.values(), key=lambda u: u.name):
        if unit.route is None:
            continue
        route = unit.route
        target: tuple[Service, int] | None = None
        if route.upstream:
            upstream_port = urlsplit(route.upstream).port or 80
            target = next(((s, p.container_port) for s in stack.services for p in s.ports
                           if upstream_port in (p.published, p.container_port)), None)
        else:
            own = next((s for s in stack.services if s.unit == unit.name), None)
            if own is not None and own.ports:
                target = (own, own.ports[0].container_port)
        if target is None:
            stack.notes.append(f"{unit.name}: [Route] PathPrefix={route.path_prefix} is not "
                               f"exported: no exported service answers {route.upstream or 'it'}")
            continue
        routes.append(Route(route.path_prefix, target[0].name, target[1], unit.name,
                            route.strip_prefix))
    return routes


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "SIGTERM"
