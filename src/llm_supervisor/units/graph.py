"""Dependency graph of units: what a target pulls in, start order, cycles."""

from __future__ import annotations

from collections.abc import Mapping

from llm_supervisor.core.errors import SupervisorError
from llm_supervisor.units.model import Unit


class DependencyCycleError(SupervisorError):
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
    """One ordering cycle as ``[a, b, ..., a]``, or None. Iterative (an explicit stack), so a
    chain of thousands of units cannot exhaust Python's recursion limit."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for root in sorted(edges):
        if colour[root] != white:
            continue
        colour[root] = grey
        path = [root]
        stack = [iter(sorted(edges.get(root, ())))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                colour[path.pop()] = black
                continue
            state = colour.get(dep, black)
            if state == grey:
                return path[path.index(dep):] + [dep]
            if state == white:
                colour[dep] = grey
                path.append(dep)
                stack.append(iter(sorted(edges.get(dep, ()))))
    return None


def start_layers(units: Mapping[str, Unit]) -> list[list[str]]:
    """Topological layers: every unit comes after all it is ordered after. Raises on a cycle.

    Kahn's algorithm, O(units + edges): a long After= chain costs no more than a wide one."""
    edges = ordering_edges(units)
    cycle = find_cycle(edges)
    if cycle:
        raise DependencyCycleError(cycle)
    waiting_on = {name: len(deps) for name, deps in edges.items()}
    followers: dict[str, list[str]] = {name: [] for name in edges}
    for name, deps in edges.items():
        for dep in deps:
            followers[dep].append(name)
    layer = sorted(name for name, count in waiting_on.items() if count == 0)
    layers: list[list[str]] = []
    while layer:
        layers.append(layer)
        following = []
        for name in layer:
            for follower in followers[name]:
                waiting_on[follower] -= 1
                if waiting_on[follower] == 0:
                    following.append(follower)
        layer = sorted(following)
    return layers
