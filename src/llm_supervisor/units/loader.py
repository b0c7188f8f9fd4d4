"""Loading a units directory: files → units, template instances, errors kept per file.

A bad file is reported and left out; the rest still load (one broken unit never takes the
daemon down). Template instances are bounded: a chain of templates naming each other with
growing instance names ends with an error, not with a daemon (or ``verify``) that never returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llm_supervisor.units import values as unit_values
from llm_supervisor.units.builder import build_unit
from llm_supervisor.units.expand import expand_specifiers
from llm_supervisor.units.ini import RawUnitFile, UnitFileError, read_unit_file
from llm_supervisor.units.model import UNIT_SUFFIXES, Unit, normalise_name, split_template

__all__ = ["LoadResult", "instantiate", "load_directory", "load_files", "reference_location",
           "split_template"]

# An instance made because another instance named it is one level deeper. Real stacks use one or
# two levels (a target wants web@1, web@1 wants db@1); these limits only stop runaway chains
# (templates naming each other with growing instance names).
MAX_INSTANCE_DEPTH = 64
MAX_INSTANCES = 1000
SAMPLE_INSTANCE = "1"


@dataclass
class LoadResult:
    units: dict[str, Unit] = field(default_factory=dict)
    templates: dict[str, Path] = field(default_factory=dict)
    errors: list[UnitFileError] = field(default_factory=list)
    raw_templates: dict[str, RawUnitFile] = field(default_factory=dict, repr=False)

    def template_text(self, template: str) -> RawUnitFile:
        """A template's parsed file, read once per load (instances are built from it)."""
        if template not in self.raw_templates:
            self.raw_templates[template] = read_unit_file(self.templates[template])
        return self.raw_templates[template]


def load_files(paths: Iterable[Path], variables: Mapping[str, str]) -> LoadResult:
    result = LoadResult()
    for path in sorted(paths):
        if path.name.endswith(UNIT_SUFFIXES) and "@." in path.name:
            result.templates[path.name] = path
            # Validate the template with a sample instance so its errors show early. A number:
            # templates put %i into ports and host names too (Upstream=http://h:70%i).
            try:
                build_unit(result.template_text(path.name), variables,
                           path.name.replace("@.", f"@{SAMPLE_INSTANCE}."), SAMPLE_INSTANCE)
            except UnitFileError as exc:
                result.errors.append(exc)
                result.templates.pop(path.name)
            continue
        try:
            unit = build_unit(read_unit_file(path), variables)
        except UnitFileError as exc:
            result.errors.append(exc)
            continue
        result.units[unit.name] = unit
    _instantiate_references(result, variables)
    return result


def load_directory(directory: Path, variables: Mapping[str, str]) -> LoadResult:
    if not directory.is_dir():
        result = LoadResult()
        result.errors.append(UnitFileError(directory, None, "units directory does not exist"))
        return result
    paths = [p for p in directory.iterdir() if p.name.endswith(UNIT_SUFFIXES) and p.is_file()]
    return load_files(paths, variables)


def instantiate(result: LoadResult, name: str, variables: Mapping[str, str]) -> Unit | None:
    """Build ``name`` from its template if it is a template instance we have a template for."""
    name = normalise_name(name)
    if name in result.units:
        return result.units[name]
    parts = split_template(name)
    if parts is None or parts[0] not in result.templates:
        return None
    template, instance = parts
    try:
        unit_values.unit_name(name)
    except ValueError:
        return None  # no unit can have this name (it would not come from a unit file either)
    try:
        unit = build_unit(result.template_text(template), variables, name, instance)
    except UnitFileError as exc:
        result.errors.append(exc)
        return None
    result.units[name] = unit
    return unit


def _instantiate_references(result: LoadResult, variables: Mapping[str, str]) -> None:
    depth = dict.fromkeys(result.units, 0)
    refused: set[str | None] = set()  # templates of a runaway family: no more instances
    made = 0
    pending = list(result.units.values())
    while pending:
        unit = pending.pop()
        if result.units.get(unit.name) is not unit:
            continue  # left out with its runaway family
        for ref in (*unit.after, *unit.requires, *unit.wants, *unit.wanted_by):
            template = _template_of(result, ref)
            if ref in result.units or template is None or template in refused:
                continue
            if made >= MAX_INSTANCES:
                result.errors.append(_runaway_error(unit, ref, depth[unit.name], made))
                return
            if depth[unit.name] >= MAX_INSTANCE_DEPTH:
                result.errors.append(_runaway_error(unit, ref, depth[unit.name], made))
                # None of the runaway family runs: its templates and their instances are out.
                family = {unit.template, template}
                refused |= family
                for name in family:
                    result.templates.pop(name or "", None)
                for name in [n for n in result.units if depth.get(n) and
                             result.units[n].template in family]:
                    del result.units[name]
                continue
            created = instantiate(result, ref, variables)
            if created is not None:
                made += 1
                depth[created.name] = depth[unit.name] + 1
                pending.append(created)


def _template_of(result: LoadResult, name: str) -> str | None:
    parts = split_template(name)
    return parts[0] if parts and parts[0] in result.templates else None


def _runaway_error(unit: Unit, ref: str, depth: int, made: int) -> UnitFileError:
    limit = (f"{MAX_INSTANCE_DEPTH} levels of instances naming instances" if depth
             >= MAX_INSTANCE_DEPTH else f"{MAX_INSTANCES} template instances")
    line, key = reference_location(unit, ref)
    return UnitFileError(
        unit.path, line, f"{unit.name} names {ref}: more than {limit}; templates that name each "
        "other with changing instances never end (use fixed instance names)", key)


def reference_location(unit: Unit, ref: str, keys: tuple[str, ...] = ()) -> tuple[int, str]:
    """Line and ``[Section] Key`` of ``unit``'s file that name ``ref`` (in one of ``keys``, or
    any key); the file's first line if the name came from somewhere else (a variable)."""
    try:
        raw = read_unit_file(unit.path)
    except UnitFileError:
        return 1, "[Unit]"
    for section in raw.sections:
        for entry in section.entries:
            if keys and entry.key not in keys:
                continue
            words = expand_specifiers(entry.value, unit.name, unit.instance).split()
            if any(normalise_name(word) == ref for word in words):
                return entry.line, f"[{section.name}] {entry.key}"
    return 1, "[Unit]"
