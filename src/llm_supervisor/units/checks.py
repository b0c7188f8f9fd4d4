"""Checks across units (what one file alone cannot show), each located by file and line:
ordering cycles and Requires= naming no unit. ``verify`` prints them; the daemon lists cycles."""

from __future__ import annotations

from collections.abc import Mapping

from llm_supervisor.units import graph
from llm_supervisor.units.ini import UnitFileError
from llm_supervisor.units.loader import LoadResult, reference_location
from llm_supervisor.units.model import Unit


def cycle_error(units: Mapping[str, Unit], cycle: list[str]) -> UnitFileError:
    """Point at the line that orders the cycle's first unit after the second (its After=, or
    the second unit's Before=)."""
    message = str(graph.DependencyCycleError(cycle))
    first = units[cycle[0]]
    second = units[cycle[1]]
    if second.name in first.after:
        return UnitFileError(first.path, reference_location(first, second.name, ("After",))[0], message,
                             "[Unit] After")
    return UnitFileError(second.path, reference_location(second, first.name, ("Before",))[0], message,
                         "[Unit] Before")


def all_cycles(units: Mapping[str, Unit]) -> list[list[str]]:
    """Every ordering cycle, found one at a time (each found cycle's units are set aside)."""
    subset = dict(units)
    cycles = []
    while cycle := graph.find_cycle(graph.ordering_edges(subset)):
        cycles.append(cycle)
        for name in cycle:
            subset.pop(name, None)
    return cycles


def cross_unit_problems(result: LoadResult) -> list[UnitFileError]:
    problems = [cycle_error(result.units, cycle) for cycle in all_cycles(result.units)]
    for unit in result.units.values():
        for ref in unit.requires:
            if ref not in result.units and ref not in result.templates:
                line, key = reference_location(unit, ref, ("Requires",))
                problems.append(UnitFileError(unit.path, line, f"{ref}: no such unit", key))
    return problems
