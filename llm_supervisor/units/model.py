"""Typed units built from parsed unit files: validation, specifiers, ``${NAME}`` expansion.

A unit file is data; nothing here starts anything. Every error names file, line and key.
Keys and defaults are documented in the README ("Unit files").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llm_supervisor.units import accounts as unit_accounts
from llm_supervisor.units import values as unit_values
from llm_supervisor.units.durations import parse_duration
from llm_supervisor.units.ini import Entry, RawUnitFile, UnitFileError

RestartPolicy = Literal["no", "on-failure", "on-abnormal", "always"]
RESTART_POLICIES = ("no", "on-failure", "on-abnormal", "always")
RUNTIMES = ("process", "docker")
UNIT_SUFFIXES = (".service", ".target")
MIN_PROBE_SEC = 0.1  # the shortest health-check Interval= and Timeout=


@dataclass(frozen=True)
class Condition:
    kind: Literal["path_exists", "executable", "runtime"]
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


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_vars(value: str, variables: Mapping[str, str], where: Callable[[str], UnitFileError]) -> str:
    """Replace ``${NAME}`` from ``variables``; ``$$`` is a literal ``$``. Unknown names raise."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in variables:
            known = ", ".join(sorted(variables))
            raise where(f"unknown variable ${{{name}}} (known: {known})")
        return variables[name]

    return _VAR.sub(replace, value)


def expand_specifiers(value: str, unit_name: str, instance: str | None) -> str:
    """systemd specifiers: %i/%I instance, %n full name, %N name without suffix, %p prefix, %%."""
    prefix = unit_name.split("@", 1)[0].removesuffix(".service").removesuffix(".target")
    table = {
        "i": instance or "", "I": instance or "", "n": unit_name,
        "N": unit_name.rsplit(".", 1)[0], "p": prefix, "%": "%",
    }
    return re.sub(r"%(.)", lambda m: table.get(m.group(1), m.group(0)), value)


# ----------------------------------------------------------------------------- building
_Converter = Callable[[str], Any]
_Expand = Callable[[str], str]


@dataclass(frozen=True)
class _SplitFirst:
    """A converter given the value before ``${NAME}`` expansion and an ``expand`` function: it
    splits the value into words first, so an expanded value is always exactly one word (a path
    with spaces stays whole; a value cannot add words to a command line)."""

    convert: Callable[[str, _Expand], Any]


def _words(text: str, expand: _Expand) -> list[str]:
    """Split like a shell (quotes group words), then expand each word on its own."""
    return [expand(word) for word in shlex.split(text)]


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected a boolean (yes/no), got {text!r}")


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 0:
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return number


def _signal(text: str) -> int:
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r} (e.g. SIGTERM, SIGINT)") from None


def _choice(options: tuple[str, ...]) -> _Converter:
    def convert(text: str) -> str:
        if text not in options:
            raise ValueError(f"invalid value {text!r} (expected one of: {', '.join(options)})")
        return text

    return convert


def _runtime_condition(text: str) -> str:
    """``ConditionRuntime=[!]process|docker``: the runtime the unit would get (its Runtime=, else
    the daemon's default; ``auto`` counts as docker when an engine answers)."""
    if text.lstrip("!") not in RUNTIMES or text.startswith("!!"):
        raise ValueError(f"invalid value {text!r} (expected process, docker, !process or !docker)")
    return text


def _command(text: str, expand: _Expand) -> list[str]:
    # systemd prefixes ("-", "@", "+", ...) are not supported; say so rather than misbehave.
    argv = _words(text, expand)
    if not argv:
        raise ValueError("empty command")
    return argv


def _unit_list(text: str, expand: _Expand) -> list[str]:
    # A variable that expands to nothing names no unit.
    return [unit_values.unit_name(normalise_name(word))
            for word in (expand(part) for part in text.split()) if word]


def _environment(text: str, expand: _Expand) -> dict[str, str]:
    result = {}
    for assignment in shlex.split(text):
        key, equals, value = assignment.partition("=")
        if not equals or not key:
            raise ValueError(f"expected NAME=VALUE, got {assignment!r}")
        result[expand(key)] = expand(value)
    return result


def _each_word(check: _Converter) -> _SplitFirst:
    return _SplitFirst(lambda text, expand: [check(word) for word in _words(text, expand)])


def _health_check(text: str, expand: _Expand) -> tuple[str, str]:
    if text.startswith("exec:"):
        # Stored re-joined with shell quoting: the prober's shlex.split gives back these words.
        return "exec", shlex.join(_command(text.removeprefix("exec:"), expand))
    text = expand(text)
    if text.startswith(("http://", "https://")):
        return "http", unit_values.http_url(text)
    if text.startswith("tcp://"):
        return "tcp", unit_values.tcp_address(text.removeprefix("tcp://"))
    raise ValueError(f"unknown check {text!r} (use http://..., tcp://HOST:PORT or exec:COMMAND)")


# Per section: key -> (attribute, converter, repeatable). Repeatable keys accumulate; an empty
# assignment resets them, as in systemd.
_SCHEMA: dict[str, dict[str, tuple[str, _Converter | _SplitFirst, bool]]] = {
    "Unit": {
        "Description": ("description", str, False),
        "Documentation": ("_ignored", str, True),
        "After": ("after", _SplitFirst(_unit_list), True),
        "Before": ("before", _SplitFirst(_unit_list), True),
        "Requires": ("requires", _SplitFirst(_unit_list), True),
        "Wants": ("wants", _SplitFirst(_unit_list), True),
        "ConditionPathExists": ("_cond_path", str, True),
        "ConditionExecutable": ("_cond_exec", str, True),
        "ConditionRuntime": ("_cond_runtime", _runtime_condition, True),
        "InstallHint": ("install_hint", str, False),
    },
    "Service": {
        "Runtime": ("runtime", _choice(RUNTIMES), False),
        "ExecStartPre": ("exec_start_pre", _SplitFirst(_command), True),
        "ExecStart": ("exec_start", _SplitFirst(_command), False),
        "Environment": ("environment", _SplitFirst(_environment), True),
        "EnvironmentFile": ("environment_files", str, True),
        "WorkingDirectory": ("working_directory", str, False),
        "Restart": ("restart", _choice(RESTART_POLICIES), False),
        "RestartSec": ("restart_sec", parse_duration, False),
        "RestartMaxDelaySec": ("restart_max_delay_sec", parse_duration, False),
        "StartLimitBurst": ("start_limit_burst", _positive_int, False),
        "StartLimitIntervalSec": ("start_limit_interval_sec", parse_duration, False),
        "TimeoutStartSec": ("timeout_start_sec", parse_duration, False),
        "TimeoutStopSec": ("timeout_stop_sec", parse_duration, False),
        "KillSignal": ("kill_signal", _signal, False),
        "User": ("user", unit_accounts.account_name, False),
        "Group": ("group", unit_accounts.account_name, False),
        "AmbientCapabilities": ("ambient_capabilities", unit_accounts.capabilities, True),
    },
    "Health": {
        "Check": ("check", _SplitFirst(_health_check), False),
        # A probe every 0 s would busy-loop the daemon; an infinite one would never run.
        "Interval": ("interval", unit_values.duration(MIN_PROBE_SEC, allow_infinity=False), False),
        "Timeout": ("timeout", unit_values.duration(MIN_PROBE_SEC, allow_infinity=False), False),
        "Retries": ("retries", _positive_int, False),
        "StartPeriod": ("start_period", parse_duration, False),
    },
    "Container": {
        "Image": ("image", str, False),
        "Build": ("build", str, False),
        "Dockerfile": ("dockerfile", str, False),
        "BuildArg": ("build_args", _SplitFirst(_environment), True),
        "Ports": ("ports", _each_word(unit_values.container_port), True),
        "Volumes": ("volumes", _SplitFirst(_words), True),
        "Network": ("network", str, False),
        "GPUs": ("gpus", str, False),
        "Memory": ("memory", str, False),
        "CPUs": ("cpus", unit_values.positive_float, False),
        "Command": ("command", _SplitFirst(_words), False),
        "User": ("user", str, False),
    },
    "Route": {
        "PathPrefix": ("path_prefix", str, False),
        "Upstream": ("upstream", unit_values.http_url, False),
        "HealthPath": ("health_path", str, False),
        "StripPrefix": ("strip_prefix", _bool, False),
    },
    "Install": {
        "WantedBy": ("wanted_by", _SplitFirst(_unit_list), True),
    },
}
_ALLOWED_SECTIONS = {"service": set(_SCHEMA), "target": {"Unit", "Install"}}
_REFERENCES = ("after", "before", "requires", "wants", "wanted_by")


def _refuse_growing_self_reference(entry: Entry, unit_name: str, instance: str,
                                   error: Callable[[str], UnitFileError]) -> None:
    """``loop@.service`` with ``Wants=loop@%ix.service`` would make loop@1x, loop@1xx, ... for
    ever: a template may name itself only with a fixed instance (or its own, ``%i``)."""
    own = split_template(unit_name)
    for word in entry.value.split():
        if "%" not in word:
            continue
        parts = split_template(normalise_name(expand_specifiers(word, unit_name, instance)))
        if own and parts and parts[0] == own[0] and parts[1] != instance:
            raise error(f"template {own[0]} names itself with a changing instance ({word!r}: "
                        f"{instance!r} → {parts[1]!r}), which would create instances without "
                        "end: use a fixed instance name or %i")


def _collect(
    raw: RawUnitFile, section_name: str, entries: list[Entry], variables: Mapping[str, str],
    unit_name: str, instance: str | None,
) -> dict[str, Any]:
    schema = _SCHEMA[section_name]
    values: dict[str, Any] = {}
    for entry in entries:
        if entry.key.startswith("X-"):
            continue
        if entry.key not in schema:
            known = ", ".join(schema)
            raise UnitFileError(
                raw.path, entry.line, f"unknown key in [{section_name}] (known: {known})", entry.key
            )
        attribute, convert, repeatable = schema[entry.key]

        def error(message: str, entry: Entry = entry) -> UnitFileError:
            return UnitFileError(raw.path, entry.line, message, f"[{section_name}] {entry.key}")

        text = expand_specifiers(entry.value, unit_name, instance)
        if repeatable and text == "":
            values.pop(attribute, None)
            continue

        def expand(word: str, error: Callable[[str], UnitFileError] = error) -> str:
            return expand_vars(word, variables, error)

        try:
            value = (convert.convert(text, expand) if isinstance(convert, _SplitFirst)
                     else convert(expand(text)))
        except ValueError as exc:
            raise error(str(exc)) from None
        if instance is not None and attribute in _REFERENCES:
            _refuse_growing_self_reference(entry, unit_name, instance, error)
        if repeatable:
            bucket = values.setdefault(attribute, {} if isinstance(value, dict) else [])
            if isinstance(value, dict):
                bucket.update(value)
            elif isinstance(value, list) and attribute not in ("exec_start_pre",):
                bucket.extend(value)
            else:
                bucket.append(value)
        else:
            values[attribute] = value
            values[f"_line_{attribute}"] = entry.line
    return values


def build_unit(
    raw: RawUnitFile,
    variables: Mapping[str, str],
    name: str | None = None,
    instance: str | None = None,
) -> Unit:
    """Validate ``raw`` and build a :class:`Unit`. ``name``/``instance`` for template instances."""
    unit_name = name or raw.path.name
    kind: Literal["service", "target"] = "target" if unit_name.endswith(".target") else "service"
    if not unit_name.endswith(UNIT_SUFFIXES):
        raise UnitFileError(raw.path, None, "unit file names must end in .service or .target")
    sections: dict[str, dict[str, Any]] = {}
    for section in raw.sections:
        if section.name.startswith("X-"):
            continue
        if section.name not in _ALLOWED_SECTIONS[kind]:
            allowed = ", ".join(f"[{s}]" for s in sorted(_ALLOWED_SECTIONS[kind]))
            raise UnitFileError(
                raw.path, section.line, f"unknown section [{section.name}] (allowed: {allowed})"
            )
        collected = _collect(raw, section.name, section.entries, variables, unit_name, instance)
        sections.setdefault(section.name, {}).update(collected)

    unit_values = sections.get("Unit", {})
    service = sections.get("Service", {})

    def fields(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if not k.startswith("_")}

    unit = Unit(name=unit_name, path=raw.path, kind=kind, template=raw.path.name if instance
                is not None else None, instance=instance)
    for key, value in fields(unit_values).items():
        setattr(unit, key, value)
    unit.conditions = [
        Condition(kind, value.lstrip("!"), value.startswith("!"))
        for kind, attr in (("runtime", "_cond_runtime"), ("path_exists", "_cond_path"),
                           ("executable", "_cond_exec"))
        for value in unit_values.get(attr, [])
    ]
    for key, value in fields(service).items():
        setattr(unit, key, value)
    unit.environment_files = [
        (value.removeprefix("-"), value.startswith("-")) for value in service.get("environment_files", [])
    ]
    unit.wanted_by = sections.get("Install", {}).get("wanted_by", [])

    if "Health" in sections:
        health = sections["Health"]
        if "check" not in health:
            raise UnitFileError(raw.path, _section_line(raw, "Health"), "[Health] needs Check=", "Check")
        check_kind, target = health.pop("check")
        unit.health = HealthSpec(check_kind, target, **fields(health))
    if "Container" in sections:
        container = fields(sections["Container"])
        for key in ("ports", "volumes"):
            if key in container:
                container[key] = tuple(container[key])
        if "command" in container:
            container["command"] = tuple(container["command"])
        unit.container = ContainerSpec(**container)
    if "Route" in sections:
        route = sections["Route"]
        if "path_prefix" not in route:
            raise UnitFileError(raw.path, _section_line(raw, "Route"), "[Route] needs PathPrefix=",
                                "PathPrefix")
        if not route["path_prefix"].startswith("/"):
            raise UnitFileError(raw.path, route["_line_path_prefix"], "must start with /",
                                "[Route] PathPrefix")
        unit.route = RouteSpec(**fields(route))

    if kind == "service":
        _check_service(unit, raw)
        unit_accounts.check(unit.user, unit.group, raw.path, service, variables)
    return unit


def _section_line(raw: RawUnitFile, name: str) -> int | None:
    return next((s.line for s in raw.sections if s.name == name), None)


def _check_service(unit: Unit, raw: RawUnitFile) -> None:
    if unit.exec_start is None and (unit.container is None or unit.runtime == "process"):
        line = _section_line(raw, "Service") or _section_line(raw, "Unit") or 1
        raise UnitFileError(
            raw.path, line, "a service needs ExecStart= (or a [Container] for Runtime=docker)",
            "[Service] ExecStart",
        )
    if unit.runtime == "docker" and (unit.container is None or not (unit.container.image or
                                                                     unit.container.build)):
        raise UnitFileError(raw.path, _section_line(raw, "Service"),
                            "Runtime=docker needs [Container] Image= or Build=", "[Service] Runtime")
    if unit.restart_max_delay_sec < unit.restart_sec:
        raise UnitFileError(raw.path, _section_line(raw, "Service"),
                            f"RestartMaxDelaySec ({unit.restart_max_delay_sec}s) is below "
                            f"RestartSec ({unit.restart_sec}s)", "[Service] RestartMaxDelaySec")
