"""Building a validated :class:`~.model.Unit` from a parsed unit file: every value through the
key table of :mod:`.schema`, specifiers and ``${NAME}`` expanded (:mod:`.expand`), the checks
across keys. Every error names file, line and key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from llm_supervisor.units import accounts as unit_accounts
from llm_supervisor.units.expand import expand_specifiers, expand_vars
from llm_supervisor.units.ini import Entry, RawUnitFile, UnitFileError
from llm_supervisor.units.model import (
    UNIT_SUFFIXES,
    Condition,
    ConditionKind,
    ContainerSpec,
    HealthSpec,
    RouteSpec,
    Unit,
    normalise_name,
    split_template,
)
from llm_supervisor.units.schema import ALLOWED_SECTIONS, REFERENCES, SCHEMA, SplitFirst


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
    schema = SCHEMA[section_name]
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
            value = (convert.convert(text, expand) if isinstance(convert, SplitFirst)
                     else convert(expand(text)))
        except ValueError as exc:
            raise error(str(exc)) from None
        if instance is not None and attribute in REFERENCES:
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
        if section.name not in ALLOWED_SECTIONS[kind]:
            allowed = ", ".join(f"[{s}]" for s in sorted(ALLOWED_SECTIONS[kind]))
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
    kinds: tuple[tuple[ConditionKind, str], ...] = (
        ("runtime", "_cond_runtime"), ("path_exists", "_cond_path"), ("executable", "_cond_exec"))
    unit.conditions = [
        Condition(kind, value.lstrip("!"), value.startswith("!"))
        for kind, attr in kinds
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
