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


# The keys by which a config file sets where the socket is (Settings' aliases and names).
SOCKET_KEYS = ("llm_supervisor_socket", "socket_path", "llm_supervisor_state_dir", "state_dir")


def _config_may_move_socket(path: Path) -> bool:
    """Whether the config file could set the socket or the state dir: it names one of
    :data:`SOCKET_KEYS` anywhere (any case), has a TOML unicode escape, or cannot be read.
    A plain text search, not a TOML parse: tomllib alone costs ``status`` 14 ms, and a file
    that never names these keys cannot set them (a false alarm only takes the slow path)."""
    try:
        text = path.read_text(errors="replace").lower()
    except OSError:
        return True
    return "\\u" in text or any(key in text for key in SOCKET_KEYS)


def quick_socket_path(socket: Path | None, state_dir: Path | None) -> Path | None:
    """The control socket from flags, environment and defaults, or None when the config file
    may change it and full settings (pydantic-settings, ~0.1 s) must be resolved."""
    if socket is not None:
        return socket
    if os.environ.get("LLM_SUPERVISOR_SOCKET"):
        return Path(os.environ["LLM_SUPERVISOR_SOCKET"])
    config = config_file_path()
    if config is not None and _config_may_move_socket(config):
        return None
    env_state = os.environ.get("LLM_SUPERVISOR_STATE_DIR")
    base = state_dir or (Path(env_state) if env_state else default_state_dir())
    return base / SOCKET_NAME
