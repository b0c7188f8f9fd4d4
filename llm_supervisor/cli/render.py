"""Human output for ``status``: a rich table coloured by state.

Everything that comes from the daemon (names, reasons, health details, exit texts) is escaped
before it meets rich markup: a reason such as ``[/x]`` must print as text, not crash ``status``.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

STATE_STYLES = {
    "running": "green", "starting": "cyan", "stopping": "yellow", "backoff": "yellow",
    "repairing": "magenta", "failed": "bold red", "skipped": "dim", "inactive": "dim",
}
HEALTH_STYLES = {"healthy": "green", "unhealthy": "red", "unknown": "yellow", "none": "dim"}


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    seconds = max(0, int(time.time() - timestamp))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def format_cpu(percent: float | None) -> str:
    return "-" if percent is None else f"{percent:.1f}%"


def format_bytes(size: int | None) -> str:
    """1536 -> '1.5K', 734003200 -> '700M': short, like ``ps``/``docker stats``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def status_table(units: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("UNIT", "STATE", "HEALTH", "PID", "CPU", "MEM", "RESTARTS", "SINCE",
                   "LAST EXIT", "REASON"):
        table.add_column(column, overflow="fold",
                         justify="right" if column in ("CPU", "MEM") else "left")
    for unit in units:
        state = escape(str(unit["state"]))
        health = escape(str(unit["health"]))
        health_text = f"[{HEALTH_STYLES.get(health, '')}]{health}[/]"
        if unit.get("health_detail") and health != "none":
            health_text += f" {escape(str(unit['health_detail']))}"
        reason = escape(str(unit.get("reason") or ""))
        if unit.get("repair_progress") is not None:
            reason = f"{reason} ({unit['repair_progress'] * 100:.0f}%)"
        table.add_row(
            escape(str(unit["name"])), f"[{STATE_STYLES.get(state, '')}]{state}[/]",
            health_text, str(unit["pid"] or "-"), format_cpu(unit.get("cpu_percent")),
            format_bytes(unit.get("memory_bytes")), str(unit["restarts"]),
            _ago(unit.get("since")), escape(str((unit.get("last_exit") or {}).get("text", "-"))),
            reason,
        )
    return table


def make_console() -> Console:
    """A console that does not squeeze the table to 80 columns when output is a pipe or a file."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def print_status(units: list[dict[str, Any]], console: Console | None = None) -> None:
    (console or make_console()).print(status_table(units))
