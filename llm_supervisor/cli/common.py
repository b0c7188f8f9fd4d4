"""Options shared by both CLIs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llm_supervisor.config import Settings, load_settings


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", type=Path, help="control socket (default: STATE_DIR/supervisor.sock)")
    parser.add_argument("--state-dir", type=Path, help="state directory (logs, socket, records)")


def settings_from(args: argparse.Namespace) -> Settings:
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
