"""``llm-supervisorctl monitor``'s options, apart from the views themselves: building the CLI's
parser must not import the monitor (rich, psutil, prometheus_client) on every command."""

from __future__ import annotations

import argparse

VIEWS = ("summary", "model", "api", "network", "novnc", "containers", "logs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for view in VIEWS:
        parser.add_argument(f"--{view}", action="store_true", help=f"the {view} view")
    parser.add_argument("--live", type=float, nargs="?", const=5.0, metavar="SECONDS",
                        help="refresh every SECONDS (default 5) until Ctrl-C")
    parser.add_argument("-n", "--lines", type=int, default=20, help="log lines (--logs)")
