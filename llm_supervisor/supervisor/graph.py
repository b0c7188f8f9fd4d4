"""Dependency graph of units: what a target pulls in, start order, cycles."""

from __future__ import annotations

from collections.abc import Mapping

from llm_supervisor.supervisor.units import Unit


class DependencyCycleError(Exception):
    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " → ".join(cycle))


def pulled_in(units: Mapping[str, Unit], root: str) -> set[str]:
    """``root`` plus everything it Requires=/Wants= (transitively) and every unit WantedBy= it."""
    wanted_by: dict[str, set[str]] = {}
    for unit in units.values():
        for target in unit.wanted_by:
            wanted_by.setdefault(target, set()).add(unit.name)
    seen: set[str] = set()
    stack = [root]
    while stack:
        name = stack.pop()
        if name in seen or name not in units:
            continue
        seen.add(name)
        unit = units[name]
        stack.extend(unit.requires)
        stack.extend(unit.wants)
        stack.extend(wanted_by.get(name, ()))
    return seen


def ordering_edges(units: Mapping[str, Unit]) -> dict[str, set[str]]:
    """name → the units it must start after (After=, plus the reverse of Before=)."""
    edges: dict[str, set[str]] = {name: set() for name in units}
    for unit in units.values():
        for dep in unit.after:
            if dep in units:
                edges[unit.name].add(dep)
        for later in unit.before:
            if later in units:
                edges[later].add(unit.name)
    return edges


def find_cycle(edges: Mapping[str, set[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if colour.get(dep, black) == grey:
                return path[path.index(dep):] + [dep]
            if colour.get(dep) == white:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        colour[node] = black
        return None

    for node in sorted(edges):
        if colour[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def start_layers(units: Mapping[str, Unit]) -> list[list[str]]:
    """Topological layers: every unit comes after all it is ordered after. Raises on a cycle."""
    edges = ordering_edges(units)
    cycle = find_cycle(edges)
    if cycle:
        raise DependencyCycleError(cycle)
    remaining = {name: set(deps) for name, deps in edges.items()}
    layers: list[list[str]] = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        layers.append(ready)
        for name in ready:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return layers
