"""Where and how a unit's program starts, so that no interpreter we start imports from a
directory someone else chose: the working directory is the unit's ``WorkingDirectory=`` or
``/`` (as systemd), never the daemon's (the caller's cwd when it was started), and
``PYTHONSAFEPATH=1`` keeps ``-m``/``-c``/script directories off ``sys.path`` for every Python
program (``${PYTHON} -m llm_supervisor...`` as root included) unless the unit sets it itself."""

from __future__ import annotations

from collections.abc import Mapping

from llm_supervisor.units.model import Unit


def safe_start(unit: Unit, env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``(cwd, env)`` for one of the unit's programs (main, ExecStartPre=, Check=exec:)."""
    started = dict(env)
    started.setdefault("PYTHONSAFEPATH", "1")
    return unit.working_directory or "/", started
