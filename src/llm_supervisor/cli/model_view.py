"""The model's loading as a progress bar (stage, percent, elapsed, ETA), then what serves it.

Used by ``start --wait`` while it waits and by ``monitor --model``; fed by the model service's
``/api/health`` (503 ``loading`` with ``progress``/``stage``/``uptime_s``, 200 ``ready``).
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def bar(fraction: float, width: int = 30) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


def eta_seconds(progress: float, elapsed: float) -> float | None:
    """Time left at the pace so far; None before there is a pace to go by."""
    if progress <= 0.01 or elapsed <= 0:
        return None
    return elapsed / progress * (1 - progress)


def loading_line(health: dict[str, Any]) -> str:
    """``loading  ████░░░  42%  weights  elapsed 12s  ETA 16s`` (plain text, no markup)."""
    progress = float(health.get("progress") or 0)
    elapsed = float(health.get("uptime_s") or 0)
    eta = eta_seconds(progress, elapsed)
    return (f"model loading {bar(progress)} {progress:4.0%}  {health.get('stage', '?')}  "
            f"elapsed {_duration(elapsed)}  ETA {_duration(eta) if eta is not None else '?'}")


def describe_model(health: dict[str, Any] | None, tokens_per_s: float | None = None) -> str:
    """Rich markup for the model's state as its health says it."""
    if not health:
        return "[red]model service: no answer[/]"
    status = health.get("status")
    if status == "loading":
        return f"[cyan]{escape(loading_line(health))}[/]"
    if status != "ready":
        error = health.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error.get("type")
        return f"[red]model service: {escape(str(status))}[/] {escape(str(error or ''))}"
    parts = [f"model {health.get('model', '?')}", f"engine {health.get('engine', '?')}",
             f"dtype {health.get('dtype', '?')}",
             f"quantization {health.get('quantization') or 'none'}",
             f"device {health.get('device', '?')}",
             f"loaded in {float(health.get('load_seconds') or 0):.1f}s"]
    if tokens_per_s is not None:
        parts.append(f"{tokens_per_s:.1f} tokens/s served")
    return "[green]ready[/] " + escape(", ".join(parts))
