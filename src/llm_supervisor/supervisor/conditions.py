"""``Condition*=`` at start time: the first unmet condition of a unit, as the reason it is
skipped (systemd checks conditions before dependencies, so a unit whose program is missing says
so itself instead of reporting what it waits for)."""

from __future__ import annotations

from collections.abc import Callable

from llm_supervisor.units.model import Unit


def unmet_condition(unit: Unit, runtime: Callable[[Unit], str]) -> str | None:
    """The reason to skip ``unit``, or None when every condition holds. ``runtime`` answers
    which runtime the unit would get (``ConditionRuntime=`` compares with it)."""
    hint = f"; {unit.install_hint}" if unit.install_hint else ""
    for condition in unit.conditions:
        if condition.kind == "runtime":
            actual = runtime(unit)
            if (actual == condition.value) == condition.negate:
                wanted = f"{'!' if condition.negate else ''}{condition.value}"
                return (f"condition unmet: the runtime is {actual} (ConditionRuntime={wanted};"
                        " LLM_SUPERVISOR_RUNTIME or Runtime= picks it)")
            continue
        if condition.kind == "path_exists":
            what = f"path {condition.value} {'exists' if condition.negate else 'does not exist'}"
        else:
            what = (f"{condition.value} is installed" if condition.negate else
                    f"{condition.value} not found on PATH")
        if condition.present_on_host() == condition.negate:
            return f"condition unmet: {what}{hint}"
    return None
