"""``llm-supervisorctl models [--json]``, ``models load NAME``, ``models unload NAME``: the model
catalog with each model's state and memory (``ollama list`` and ``ollama ps`` in one table)."""

from __future__ import annotations

import argparse
import json
import time

from llm_supervisor.cli.client import ControlClient

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="the model catalog: state, memory, keep-alive; "
                                           "load|unload NAME")
    models.add_argument("verb", nargs="?", choices=["load", "unload"])
    models.add_argument("name", nargs="?")
    models.add_argument("--json", action="store_true", help="machine-readable output")


def _size(value: int | None) -> str:
    if not value:
        return "-"
    return f"{value / (1 << 20):.0f} MiB"


def _ago(wall: float | None) -> str:
    if not wall:
        return "never"
    seconds = max(0.0, time.time() - wall)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def _keep(view: dict[str, Any]) -> str:
    if view["pinned"]:
        return "pinned"
    if view["keep_alive_s"] is None:
        return "forever"
    if view["keep_alive_left_s"] is not None:
        return f"{view['keep_alive_left_s']:.0f} s left"
    return f"{view['keep_alive_s']:g} s"


def table(answer: dict[str, Any]) -> str:
    header = ("MODEL", "STATE", "MEMORY", "ESTIMATE", "IN FLIGHT", "LAST USE", "KEEP ALIVE",
              "LOADS", "SOURCE")
    rows = [header]
    for view in answer["models"]:
        state = view["state"] + (f" ({view['reason']})" if view["state"] == "failed" and
                                 view.get("reason") else "")
        rows.append((view["id"], state, _size(view["memory_bytes"]),
                     _size(view["estimate_bytes"]), str(view["in_flight"]),
                     _ago(view["last_used"]), _keep(view), str(view["loads"]), view["source"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in rows]
    lines.append(f"memory budget: {_size(answer['budget_bytes'])}  router: {answer['router']}")
    lines += [f"catalog error: {error}" for error in answer.get("catalog_errors", [])]
    return "\n".join(lines)


def run(client: ControlClient, args: argparse.Namespace) -> int:
    if args.verb:
        if not args.name:
            print(f"models {args.verb}: name a model (llm-supervisorctl models lists them)")
            return 2
        view = client.post(f"/models/{args.name}/{args.verb}")
        print(f"{args.verb}: {view['id']} is {view['state']}"
              + (f" ({view['load_seconds']:.1f} s)" if args.verb == "load" and
                 view.get("load_seconds") else ""))
        return 0
    answer = client.get("/models")
    print(json.dumps(answer, indent=2) if args.json else table(answer))
    return 0
