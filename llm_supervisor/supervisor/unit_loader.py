"""Loading a units directory: files → units, template instances, errors kept per file.

A bad file is reported and left out; the rest still load (one broken unit never takes the
daemon down).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llm_supervisor.supervisor.unit_file import UnitFileError, read_unit_file
from llm_supervisor.supervisor.units import UNIT_SUFFIXES, Unit, build_unit, normalise_name


@dataclass
class LoadResult:
    units: dict[str, Unit] = field(default_factory=dict)
    templates: dict[str, Path] = field(default_factory=dict)
    errors: list[UnitFileError] = field(default_factory=list)


def split_template(name: str) -> tuple[str, str] | None:
    """``web@2.service`` → (``web@.service``, ``2``); None for a plain name."""
    stem, dot, suffix = name.rpartition(".")
    if "@" not in stem:
        return None
    prefix, instance = stem.split("@", 1)
    if not instance:
        return None
    return f"{prefix}@.{suffix}", instance


def load_files(paths: Iterable[Path], variables: Mapping[str, str]) -> LoadResult:
    result = LoadResult()
    for path in sorted(paths):
        if path.name.endswith(UNIT_SUFFIXES) and "@." in path.name:
            result.templates[path.name] = path
            try:  # validate the template with a dummy instance so its errors show early
                build_unit(read_unit_file(path), variables, path.name.replace("@.", "@check."),
                           "check")
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
        unit = build_unit(read_unit_file(result.templates[template]), variables, name, instance)
    except UnitFileError as exc:
        result.errors.append(exc)
        return None
    result.units[name] = unit
    return unit


def _instantiate_references(result: LoadResult, variables: Mapping[str, str]) -> None:
    pending = list(result.units.values())
    while pending:
        unit = pending.pop()
        for ref in (*unit.after, *unit.requires, *unit.wants, *unit.wanted_by):
            if ref not in result.units:
                created = instantiate(result, ref, variables)
                if created is not None:
                    pending.append(created)
