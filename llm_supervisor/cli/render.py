"""Human output for ``status``: a rich table coloured by state.

Everything that comes from the daemon (names, reasons, health details, exit texts) is escaped
before it meets rich markup: a reason such as ``[/x]`` must print as text, not crash ``status``.
"""

from __future__ import annotations

import time
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.text import Text

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


Segment = tuple[str, str]  # text, rich style
RIGHT_ALIGNED = frozenset({"CPU", "MEM"})
COLUMNS = ("UNIT", "STATE", "HEALTH", "PID", "CPU", "MEM", "RESTARTS", "SINCE", "LAST EXIT",
           "REASON")


def _row(unit: dict[str, Any]) -> list[list[Segment]]:
    state = str(unit["state"])
    health = str(unit["health"])
    health_cell: list[Segment] = [(health, HEALTH_STYLES.get(health, ""))]
    if unit.get("health_detail") and health != "none":
        health_cell.append((f" {unit['health_detail']}", ""))
    reason = str(unit.get("reason") or "")
    if unit.get("repair_progress") is not None:
        reason = f"{reason} ({unit['repair_progress'] * 100:.0f}%)"
    heal = unit.get("heal") or {}
    if heal.get("line"):  # "degraded: OOM → context 4096 → context 2048" (heal plugin)
        reason = f"{reason}; {heal['line']}" if reason else str(heal["line"])
    memory = format_bytes(unit.get("memory_bytes"))
    if unit.get("memory_max"):  # use against MemoryMax= (the cgroup's count where there is one)
        used = unit.get("memory_cgroup_bytes") or unit.get("memory_bytes")
        memory = f"{format_bytes(used)}/{format_bytes(unit['memory_max'])}"
    return [
        [(str(unit["name"]), "")], [(state, STATE_STYLES.get(state, ""))], health_cell,
        [(str(unit["pid"] or "-"), "")], [(format_cpu(unit.get("cpu_percent")), "")],
        [(memory, "")], [(str(unit["restarts"]), "")],
        [(_ago(unit.get("since")), "")],
        [(str((unit.get("last_exit") or {}).get("text", "-")), "")], [(reason, "")],
    ]


def status_table(units: list[dict[str, Any]]) -> Group:
    """The ``status`` table, one :class:`Text` per row.

    Built by hand rather than with ``rich.table.Table``: measuring and wrapping every cell made
    200 units take ~100 ms (bench/bench_views.py). Cells are plain text with a style, never
    markup, so a daemon-supplied ``[/x]`` prints as itself."""
    rows = [[[(column, "bold")] for column in COLUMNS], *(_row(unit) for unit in units)]
    widths = [max(sum(cell_len(text) for text, _ in row[i]) for row in rows)
              for i in range(len(COLUMNS))]
    last = len(COLUMNS) - 1
    lines = []
    for row in rows:
        line = Text()
        for index, cell in enumerate(row):
            pad = " " * (widths[index] - sum(cell_len(text) for text, _ in cell))
            if COLUMNS[index] in RIGHT_ALIGNED:
                line.append(pad)
            for text, style in cell:
                line.append(text, style or None)
            if COLUMNS[index] not in RIGHT_ALIGNED and index != last:
                line.append(pad)
            if index != last:
                line.append("  ")
        lines.append(line)
    return Group(*lines)


def make_console() -> Console:
    """A console that does not squeeze the table to 80 columns when output is a pipe or a file."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def print_status(units: list[dict[str, Any]], console: Console | None = None) -> None:
    (console or make_console()).print(status_table(units))
