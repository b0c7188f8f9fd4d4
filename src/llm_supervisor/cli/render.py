"""Human output for ``status --live`` and ``monitor``: the status table as rich text, coloured
by state (the plain ``status`` command prints :mod:`.status_rows`' lines without rich).

Everything that comes from the daemon (names, reasons, health details, exit texts) is escaped
before it meets rich markup: a reason such as ``[/x]`` must print as text, not crash ``status``.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.text import Text

from llm_supervisor.cli.status_rows import (  # noqa: F401 (re-exported for the views)
    HEALTH_STYLES,
    STATE_STYLES,
    format_bytes,
    format_cpu,
    laid_out,
    table_rows,
)


def status_table(units: list[dict[str, Any]]) -> Group:
    """The ``status`` table, one :class:`Text` per row.

    Built by hand rather than with ``rich.table.Table``: measuring and wrapping every cell made
    200 units take ~100 ms (bench/bench_views.py). Cells are plain text with a style, never
    markup, so a daemon-supplied ``[/x]`` prints as itself."""
    lines = []
    for segments in laid_out(table_rows(units), cell_len):
        line = Text()
        for text, style in segments:
            line.append(text, style or None)
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
