"""Where things live by default, without importing pydantic (the CLI resolves its socket path
on every call, and pydantic-settings costs ~0.1 s of import time)."""

from __future__ import annotations

import os
from pathlib import Path

from llm_supervisor.data import shipped_units_dir

# The checkout (Docker build contexts under packaging/); not used to find package data.
PROJECT_DIR = Path(__file__).resolve().parents[3]
SOCKET_NAME = "supervisor.sock"


ROOT_STATE_DIR = Path("/var/lib/llm-supervisor")


def default_state_dir() -> Path:
    """Root's is ``/var/lib/llm-supervisor`` (systemd's ``StateDirectory=``): one under
    ``/root`` (0700) would be out of the unit user's reach and make every unit run as root.
    Anyone else's follows the XDG base directories."""
    if os.geteuid() == 0:
        return ROOT_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llm-supervisor"


def default_units_dir() -> Path:
    """The unit files shipped in the package (``units/`` in a checkout links to them)."""

    return shipped_units_dir()


def config_file_path() -> Path | None:
    explicit = os.environ.get("LLM_SUPERVISOR_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path.home() / ".config" / "llm-supervisor" / "config.toml"
    return default if default.exists() else None


def quick_socket_path(socket: Path | None, state_dir: Path | None) -> Path | None:
    """The control socket from flags and environment alone, or None when a TOML config file
    exists and full settings must be resolved."""
    if socket is not None:
        return socket
    if os.environ.get("LLM_SUPERVISOR_SOCKET"):
        return Path(os.environ["LLM_SUPERVISOR_SOCKET"])
    if config_file_path() is not None:
        return None
    env_state = os.environ.get("LLM_SUPERVISOR_STATE_DIR")
    base = state_dir or (Path(env_state) if env_state else default_state_dir())
    return base / SOCKET_NAME
