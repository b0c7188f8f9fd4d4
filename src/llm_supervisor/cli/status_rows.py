"""The ``status`` table's cells, and the table as plain lines (ANSI colours on a terminal).

No rich here: ``llm-supervisorctl status`` runs often and from scripts, and importing rich was a
large part of its start-up. :mod:`llm_supervisor.cli.render` turns the same cells into rich text
for the live views (``status --live``, ``monitor``).
"""

from __future__ import annotations

import os
import time
import unicodedata

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

STATE_STYLES = {
    "running": "green", "starting": "cyan", "stopping": "yellow", "backoff": "yellow",
    "repairing": "magenta", "failed": "bold red", "skipped": "dim", "inactive": "dim",
}
HEALTH_STYLES = {"healthy": "green", "unhealthy": "red", "unknown": "yellow", "none": "dim"}
ANSI = {"green": "32", "cyan": "36", "yellow": "33", "magenta": "35", "red": "31",
        "bold red": "1;31", "dim": "2", "bold": "1"}

Segment = tuple[str, str]  # text, style (a key of ANSI, or "")
RIGHT_ALIGNED = frozenset({"CPU", "MEM"})
COLUMNS = ("UNIT", "STATE", "HEALTH", "PID", "CPU", "MEM", "RESTARTS", "SINCE", "LAST EXIT",
           "REASON")
# Control characters from the daemon (a unit's reason, a log-derived exit text) must not reach
# the terminal as escape sequences.
_UNPRINTABLE = {code: "?" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    ord("\t"): " ", ord("\n"): " "}


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


def row(unit: dict[str, Any]) -> list[list[Segment]]:
    """One unit's cells, each a list of (text, style) segments."""
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


def table_rows(units: list[dict[str, Any]]) -> list[list[list[Segment]]]:
    """The header row, then one row per unit."""
    return [[[(column, "bold")] for column in COLUMNS], *(row(unit) for unit in units)]


def text_width(text: str) -> int:
    """Terminal cells ``text`` takes: wide (East Asian) characters two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(char) else
               2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _printable(text: str) -> str:
    return text if text.isascii() and text.isprintable() else text.translate(_UNPRINTABLE)


def _cell_width(cell: list[Segment], width: Callable[[str], int]) -> int:
    if len(cell) == 1:
        return width(cell[0][0])
    return sum(width(text) for text, _ in cell)


def laid_out(rows: list[list[list[Segment]]], width: Callable[[str], int]) -> list[list[Segment]]:
    """Each row as one list of segments: every column as wide as its widest cell (``width``
    gives a text's terminal cells), CPU and MEM right-aligned, two spaces between columns, the
    last column unpadded. The plain table below and the rich one (:mod:`.render`) print it."""
    # Each cell's width once (a thousand units are ten thousand cells).
    cell_widths = [[_cell_width(cell, width) for cell in cells] for cells in rows]
    widths = [max(column) for column in zip(*cell_widths, strict=True)]
    last = len(COLUMNS) - 1
    lines = []
    for cells, own_widths in zip(rows, cell_widths, strict=True):
        line: list[Segment] = []
        for index, cell in enumerate(cells):
            pad = " " * (widths[index] - own_widths[index])
            right = COLUMNS[index] in RIGHT_ALIGNED
            if right:
                line.append((pad, ""))
            line += cell
            if index != last:
                line.append(("  " if right else pad + "  ", ""))
        lines.append(line)
    return lines


def plain_lines(units: list[dict[str, Any]], color: bool) -> list[str]:
    """The table as lines of text (ANSI colours when ``color``)."""
    rows = [[[(_printable(text), style) for text, style in cell] for cell in cells]
            for cells in table_rows(units)]
    return ["".join(f"\x1b[{ANSI[style]}m{text}\x1b[0m" if color and style and text else text
                    for text, style in line).rstrip()
            for line in laid_out(rows, text_width)]


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set or TERM is ``dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def print_plain_status(units: list[dict[str, Any]], stream: TextIO) -> None:
    stream.write("\n".join(plain_lines(units, wants_color(stream))) + "\n")
