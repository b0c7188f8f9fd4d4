"""Options shared by both CLIs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning
from llm_supervisor.config.paths import quick_socket_path

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from llm_supervisor.config.settings import Settings


# Where the daemon is: option -> help. Each takes a path (parsing.subcommand_in skips it).
LOCATION_OPTIONS = {"--socket": "control socket (default: STATE_DIR/supervisor.sock)",
                    "--state-dir": "state directory (logs, socket, records)"}


def add_location_options(parser: argparse.ArgumentParser) -> None:
    for option, help_text in LOCATION_OPTIONS.items():
        parser.add_argument(option, type=Path, help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    from llm_supervisor.config.settings import load_settings

    return load_settings(
        socket_path=getattr(args, "socket", None),
        state_dir=getattr(args, "state_dir", None),
        units_dir=getattr(args, "units_dir", None),
    )


def export_to_environment(settings: Settings) -> dict[str, str]:
    """The environment a background daemon needs to resolve the same settings."""
    env = dict(os.environ)
    env["LLM_SUPERVISOR_STATE_DIR"] = str(settings.state_dir)
    env["LLM_SUPERVISOR_UNITS_DIR"] = str(settings.units_dir)
    env["LLM_SUPERVISOR_SOCKET"] = str(settings.socket)
    return env


def socket_from(args: argparse.Namespace) -> Path:
    """The control socket, resolving full settings only when a config file could change it."""
    quick = quick_socket_path(getattr(args, "socket", None), getattr(args, "state_dir", None))
    return quick if quick is not None else settings_from(args).socket


def shut_down(client: ControlClient, timeout: float, purge: bool = False) -> int:
    """Ask the daemon to stop (and purge), then wait until its process is gone: the one path
    behind ``llm-supervisord stop`` and ``llm-supervisorctl shutdown``."""
    try:
        pid = client.get("/ping")["pid"]
        client.post("/shutdown", {"purge": "1" if purge else "0"})
    except DaemonNotRunning:
        print("llm-supervisord is not running")
        return 0
    except ControlError as exc:
        print(f"llm-supervisord: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("llm-supervisord stopped" + (" and purged" if purge else ""))
            return 0
        time.sleep(0.05)
    print(f"llm-supervisord (pid {pid}) still running after {timeout:g}s", file=sys.stderr)
    return 1
