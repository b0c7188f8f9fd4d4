"""Expansion inside unit-file values: ``${NAME}`` from the effective configuration and systemd's
``%`` specifiers (``%i`` the template instance, ``%n``, ``%N``, ``%p``, ``%%``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from llm_supervisor.units.ini import UnitFileError

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
