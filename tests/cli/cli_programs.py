"""Unit texts the CLI tests run (a plain module with a unique name)."""

from __future__ import annotations

import sys
from pathlib import Path

HUNGRY = Path(__file__).parent / "cli_hungry.py"


def hungry_tree_unit(megabytes: int) -> str:
    """A shell (the unit's main process, a few hundred KB) whose child holds ``megabytes`` of
    memory and burns a core: only the whole tree's numbers show it."""
    return ("[Service]\n"
            f"ExecStart=/bin/sh -c '{sys.executable} {HUNGRY} {megabytes}; sleep 1000'\n"
            "[Install]\nWantedBy=stack.target\n")


def sleeper_unit() -> str:
    return "[Service]\nExecStart=/bin/sleep 1000\n"
