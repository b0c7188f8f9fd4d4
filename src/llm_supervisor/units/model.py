"""The data model of a unit: what a validated unit file says, fully expanded.

A unit file is data; nothing here starts anything. :mod:`.builder` makes these from parsed
files (:mod:`.ini`) with the key table of :mod:`.schema`; keys and defaults are documented in
the README ("Unit files").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

RestartPolicy = Literal["no", "on-failure", "on-abnormal", "always"]
RESTART_POLICIES = ("no", "on-failure", "on-abnormal", "always")
RUNTIMES = ("process", "docker")
UNIT_SUFFIXES = (".service", ".target")


ConditionKind = Literal["path_exists", "executable", "runtime"]


@dataclass(frozen=True)
class Condition:
    kind: ConditionKind
    value: str
    negate: bool = False

    def present_on_host(self) -> bool:
        """For ``path_exists``/``executable``: does the path exist / the program resolve on
        PATH (``negate`` not applied)? The runtime condition needs the daemon's runtime choice."""
        if self.kind == "path_exists":
            return os.path.exists(self.value)
        return shutil.which(self.value) is not None


@dataclass(frozen=True)
class HealthSpec:
    kind: Literal["http", "tcp", "exec"]
    target: str
    interval: float = 2.0
    timeout: float = 1.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class ContainerSpec:
    image: str | None = None
    build: str | None = None
    dockerfile: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    network: str = "llm-network"
    gpus: str | None = None
    memory: str | None = None
    cpus: float | None = None
    command: tuple[str, ...] | None = None
    user: str | None = None


@dataclass(frozen=True)
class RouteSpec:
    path_prefix: str
    upstream: str | None = None
    health_path: str | None = None
    strip_prefix: bool = False


@dataclass
class Unit:
    """One service or target, fully expanded and validated."""

    name: str
    path: Path
    kind: Literal["service", "target"]
    description: str = ""
    after: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    wants: list[str] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    install_hint: str = ""
    runtime: str | None = None
    exec_start_pre: list[list[str]] = field(default_factory=list)
    exec_start: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[tuple[str, bool]] = field(default_factory=list)
    working_directory: str | None = None
    restart: RestartPolicy = "on-failure"
    restart_sec: float = 1.0
    restart_max_delay_sec: float = 30.0
    start_limit_burst: int = 5
    start_limit_interval_sec: float = 60.0
    timeout_start_sec: float = 90.0
    timeout_stop_sec: float = 10.0
    kill_signal: int = int(signal.SIGTERM)
    user: str | None = None  # process units: run as this user (daemon as root only)
    group: str | None = None
    ambient_capabilities: list[str] = field(default_factory=list)
    memory_max: int | None = None  # bytes; the kernel kills the unit beyond it (cgroup)
    memory_high: int | None = None  # bytes; the kernel throttles and reclaims beyond it
    stall_timeout_sec: float | None = None  # model server: no token for this long = stuck
    health: HealthSpec | None = None
    container: ContainerSpec | None = None
    route: RouteSpec | None = None
    wanted_by: list[str] = field(default_factory=list)
    template: str | None = None
    instance: str | None = None

    @property
    def short_name(self) -> str:
        return self.name.removesuffix(".service")

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    def fingerprint(self) -> str:
        """A hash of everything that defines the unit: reload restarts a unit when it changes."""
        data = asdict(self)
        data["path"] = str(self.path)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def normalise_name(name: str) -> str:
    """``model-service`` → ``model-service.service``; names with a known suffix stay."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def split_template(name: str) -> tuple[str, str] | None:
    """``web@2.service`` → (``web@.service``, ``2``); None for a plain name."""
    stem, dot, suffix = name.rpartition(".")
    if "@" not in stem:
        return None
    prefix, instance = stem.split("@", 1)
    if not instance:
        return None
    return f"{prefix}@.{suffix}", instance
