"""``llm-supervisord start --wait``: show the stack coming up, then do what run.sh did at the end
— a smoke test through the gateway and the instructions (URLs, noVNC password, curl commands
with the real port, how to stop).

On a terminal the progress is a live table with the model's loading bar; otherwise (a pipe, a
CI log) one line per change, so a slow first start never looks like a hang.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from llm_supervisor.cli import probes
from llm_supervisor.cli.client import ControlClient
from llm_supervisor.cli.gateway_view import gateway_summary
from llm_supervisor.cli.model_view import describe_model, loading_line
from llm_supervisor.cli.render import make_console, print_status, status_table
from llm_supervisor.cli.stack_info import GATEWAY_UNIT, MODEL_UNIT, StackInfo, stack_info
from llm_supervisor.daemon.unit_user import FALLBACK_FIX, fallback_reason


def settled(units: list[dict[str, Any]]) -> bool:
    wanted = [u for u in units if u["state"] != "inactive"]
    return all(u["state"] in ("failed", "skipped") or
               (u["state"] == "running" and u["health"] in ("healthy", "none")) for u in wanted)


def _by_name(units: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in units}


class _ChangePrinter:
    """Plain output: a line when a unit changes state or health, and every 10 % of loading."""

    def __init__(self, console: Console):
        self.console = console
        self.seen: dict[str, tuple[str, str]] = {}
        self.last_decile = -1

    def units(self, units: list[dict[str, Any]]) -> None:
        for unit in units:
            now = (unit["state"], unit["health"])
            if unit["state"] == "inactive" or self.seen.get(unit["name"]) == now:
                continue
            self.seen[unit["name"]] = now
            reason = f" ({unit['reason']})" if unit.get("reason") else ""
            self.console.print(Text(f"  {unit['name']}: {unit['state']}, health "
                                    f"{unit['health']}{reason}"))

    def model(self, health: dict[str, Any] | None) -> None:
        if not health or health.get("status") != "loading":
            return
        decile = int(float(health.get("progress") or 0) * 10)
        if decile != self.last_decile:
            self.last_decile = decile
            self.console.print(Text("  " + loading_line(health)))


def _model_health(info: StackInfo, units: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    unit = units.get(MODEL_UNIT)
    if unit is None or unit["state"] not in ("starting", "running"):
        return None
    probe = probes.health(info.model_url, timeout=1.0)
    return probe.body or None


def wait_until_up(client: ControlClient, info: StackInfo, seconds: float,
                  console: Console) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    printer = None if console.is_terminal else _ChangePrinter(console)
    live = Live(console=console, refresh_per_second=4, transient=True) if console.is_terminal \
        else None
    if live is not None:
        live.start()
    try:
        while True:
            units = client.get("/units")
            health = _model_health(info, _by_name(units))
            if live is not None:
                parts: list[Any] = [status_table(units)]
                if health and health.get("status") == "loading":
                    parts.append(Text.from_markup(describe_model(health)))
                live.update(Group(*parts))
            elif printer is not None:
                printer.units(units)
                printer.model(health)
            if settled(units) or time.monotonic() > deadline:
                return units
            time.sleep(0.5)
    finally:
        if live is not None:
            live.stop()


def smoke_test(info: StackInfo, units: dict[str, dict[str, Any]]) -> list[probes.Probe] | None:
    """Health and a short generate through the gateway (the model service directly when no
    gateway runs). None when this stack has no model service to test."""
    model = units.get(MODEL_UNIT)
    if model is None or model["state"] == "inactive":
        return None
    gateway = units.get(GATEWAY_UNIT)
    base = info.gateway_url if gateway and gateway["state"] == "running" else info.model_url
    health = probes.health(base)
    results = [health]
    results.append(probes.generate(base) if health.ok else probes.Probe(
        "generate", base, False, 0.0, error="skipped: health failed"))
    return results


def print_instructions(console: Console, info: StackInfo, units: dict[str, dict[str, Any]]
                       ) -> None:
    def line(label: str, value: str) -> None:
        console.print(f"  [bold]{label:<11}[/] {escape(value)}")

    console.print()
    if GATEWAY_UNIT in units:
        line("Test page", info.gateway_url)
        line("Gateway", gateway_summary(info.gateway))  # which one, its version, its dashboard
    if info.dashboard_url:
        line("Dashboard", info.dashboard_url)
    novnc = units.get("novnc")
    if novnc is not None and novnc["state"] != "inactive" and info.novnc.get("url"):
        line("noVNC", info.novnc["url"])
        line("password", info.novnc.get("password") or
             "not generated yet: `llm-supervisorctl novnc` shows it once x11vnc started")
    if MODEL_UNIT in units:
        console.print("  [bold]Try:[/]")
        for command in info.curl_examples():
            console.print(f"    {escape(command)}")
    console.print("  [bold]Watch:[/]     llm-supervisorctl status | monitor --live | logs --all -f")
    console.print("  [bold]Stop:[/]      llm-supervisord stop")


def print_run_as_root(console: Console, settings: Any) -> None:
    """A root daemon that could not give the units their own user says so here, not only in
    its log (``units_run_as_root``)."""
    reason = fallback_reason(settings)
    if reason is not None:
        console.print(f"[yellow]units run as root, not {escape(settings.resolved_unit_user)}:[/] "
                      f"{escape(reason)} — {escape(FALLBACK_FIX)}, or set UNIT_USER=root to "
                      "say that is intended")


def wait_and_report(client: ControlClient, settings: Any, seconds: float) -> int:
    """The end of ``start --wait``: 0 when every wanted unit is up and the smoke test passed."""
    console = make_console()
    info = stack_info(client, settings)
    console.print("waiting for the units to come up…")
    units = wait_until_up(client, info, seconds, console)
    info = stack_info(client, settings)  # again: x11vnc made the noVNC password meanwhile
    by_name = _by_name(units)
    print_status(units, console)
    code = 0
    target_error = client.get("/ping").get("target_error")
    if target_error:  # nothing was started at all
        console.print(f"[red]target not found:[/] {escape(target_error)}")
        code = 1
    failed = [u["name"] for u in units if u["state"] == "failed"]
    if failed:
        console.print(f"[red]failed:[/] {escape(', '.join(failed))} — see "
                      "`llm-supervisorctl logs UNIT`")
        code = 1
    elif not settled(units):
        console.print(f"[yellow]not everything was up after {seconds:g}s[/] — "
                      "`llm-supervisorctl monitor --live` shows what is still starting")
        code = 1
    print_run_as_root(console, settings)
    results = smoke_test(info, by_name)
    if results is not None:
        console.print("[bold]Smoke test:[/] " + ", ".join(
            f"[{'green' if p.ok else 'red'}]{escape(p.summary())}[/]" for p in results))
        if not all(p.ok for p in results):
            code = 1
    print_instructions(console, info, by_name)
    return code
