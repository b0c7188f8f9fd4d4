"""``llm-supervisorctl monitor``: the old monitor.sh's views in one command.

    --summary     units, what is up, where the stack answers (default)
    --model       loading bar (stage, %, elapsed, ETA), then engine, dtype, quantization, tokens/s;
                  the same for each catalog model that is loaded (docs/models.md)
    --api         /api/health and a 1-token generate, through the gateway and directly, timed
    --network     ports each unit listens on, gateway routes with each upstream's health, the
                  Docker network and its containers when the docker runtime is used
    --novnc       URL, password, state of xvfb/x11vnc/novnc/browser
    --containers  CPU and memory per unit (process tree or container)
    --logs        the last lines of every unit, merged by time
    --live [S]    refresh every S seconds (default 5, as monitor.sh); combines with any view

Views combine (``--model --api --live``) and print in the order above.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from llm_supervisor.cli import probes
from llm_supervisor.cli.client import ControlClient, ControlError
from llm_supervisor.cli.gateway_view import gateway_title, gateway_view
from llm_supervisor.cli.model_view import describe_model
from llm_supervisor.cli.monitor_args import VIEWS, add_arguments  # noqa: F401 (re-exported)
from llm_supervisor.cli.render import (
    STATE_STYLES,
    format_bytes,
    format_cpu,
    make_console,
    status_table,
)
from llm_supervisor.cli.stack_info import MODEL_UNIT, StackInfo, stack_info
from llm_supervisor.model_server.metrics_reader import RateTracker, parse
from llm_supervisor.units.catalog import DEFAULT_MODEL_UNIT

DESKTOP_UNITS = ("xvfb", "x11vnc", "novnc", "browser")


@dataclass
class Monitor:
    client: ControlClient
    settings: Any
    lines: int = 20
    rates: RateTracker = field(default_factory=RateTracker)
    catalog_rates: dict[str, RateTracker] = field(default_factory=dict)  # by model name
    _info: StackInfo | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            self._info = stack_info(self.client, self.settings)
        return self._info

    def units(self) -> list[dict[str, Any]]:
        return self.client.get("/units")

    # ----------------------------------------------------------------- views
    def summary(self) -> RenderableType:
        units = self.units()
        counts: dict[str, int] = {}
        for unit in units:
            counts[unit["state"]] = counts.get(unit["state"], 0) + 1
        line = "  ".join(f"[{STATE_STYLES.get(state, '')}]{count} {escape(state)}[/]"
                         for state, count in sorted(counts.items()))
        where = [f"gateway {self.info.gateway_url}"]
        if self.info.dashboard_url:
            where.append(f"dashboard {self.info.dashboard_url}")
        parts: list[RenderableType] = [status_table(units), Text.from_markup(line),
                                       Text(", ".join(where))]
        if any(u["name"] == MODEL_UNIT and u["state"] != "inactive" for u in units):
            parts.append(Text.from_markup(describe_model(
                probes.health(self.info.model_url, timeout=2).body or None)))
        return Group(*parts)

    def model(self) -> RenderableType:
        """The default model, then each catalog model that is loaded (docs/models.md)."""
        parts = self._model_server(self.info.model_url, self.rates)
        for view in self._loaded_catalog_models():
            tracker = self.catalog_rates.setdefault(view["id"], RateTracker())
            parts.append(Text(f"{view['unit'].removesuffix('.service')}:", style="bold"))
            parts += self._model_server(view["upstream"].rstrip("/") + "/", tracker)
        return Group(*parts)

    def _loaded_catalog_models(self) -> list[dict[str, Any]]:
        try:
            answer = self.client.get("/models")
        except ControlError:  # 404: no catalog (a stack without model-service)
            return []
        return [view for view in answer.get("models", [])
                if view.get("state") == "loaded" and view.get("upstream")
                and view.get("unit") != DEFAULT_MODEL_UNIT]  # the default is shown first

    def _model_server(self, base_url: str, tracker: RateTracker) -> list[RenderableType]:
        """One model server: what its health says, then its throughput from /metrics."""
        health = probes.health(base_url, timeout=2)
        metrics_text = probes.get_text(base_url + "metrics", timeout=2)
        rates = tracker.update(parse(metrics_text)) if metrics_text else {}
        parts: list[RenderableType] = [Text.from_markup(
            describe_model(health.body or None, rates.get("tokens_per_s")))]
        if rates:
            latency = rates.get("mean_latency_s")
            per_s = rates.get("requests_per_s")
            parts.append(Text(
                f"requests {rates['requests_total']:.0f}"
                + (f" ({per_s:.2f}/s)" if per_s is not None else "")
                + f", tokens generated {rates['generated_tokens_total']:.0f}"
                + (f", mean latency {latency * 1000:.0f} ms" if latency is not None else "")
                + f", running {rates['running']:.0f}, queued {rates['queued']:.0f}"))
        return parts

    def api(self) -> RenderableType:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("PROBE", "VIA", "RESULT", "LATENCY", "DETAIL"):
            table.add_column(column)
        for via, base in (("gateway", self.info.gateway_url), ("direct", self.info.model_url)):
            health = probes.health(base, timeout=5)
            checks = [health, probes.generate(base, max_tokens=1) if health.ok else None]
            for probe in checks:
                if probe is None:
                    table.add_row("generate", via, "[dim]skipped[/]", "-", "health failed")
                    continue
                detail = probe.error or (f"{probe.body.get('status', '')}" if probe.name ==
                                         "health" else
                                         f"{probe.body.get('generated_tokens', '?')} token(s)")
                table.add_row(probe.name, via, "[green]PASS[/]" if probe.ok else "[red]FAIL[/]",
                              f"{probe.latency_s * 1000:.0f} ms", escape(detail))
        where = Text(f"gateway {self.info.gateway_url}   direct {self.info.model_url}")
        return Group(where, table)

    def network(self) -> RenderableType:
        units = self.units()
        ports = Table(title="listening", box=None, header_style="bold", pad_edge=False,
                      title_justify="left")
        for column in ("UNIT", "PID", "LISTENS ON"):
            ports.add_column(column)
        listening = _listening_by_pid()
        for unit in units:
            if not unit.get("pid"):
                continue
            addresses = sorted({a for pid in _tree_pids(unit["pid"])
                                for a in listening.get(pid, ())})
            ports.add_row(escape(unit["name"]), str(unit["pid"]),
                          escape(", ".join(addresses) or "-"))
        gateway = self.info.gateway
        routes = Table(title=escape(gateway_title(gateway, self.info.gateway_url)), box=None,
                       header_style="bold", pad_edge=False, title_justify="left")
        for column in ("PATH", "UPSTREAM", "HEALTH", "GATEWAY SAYS"):
            routes.add_column(column)
        for route in gateway.get("routes", []):
            for upstream in route.get("upstreams", []):
                routes.add_row(escape(route.get("path_prefix", "")), escape(upstream),
                               _upstream_health(upstream, route.get("health_path")),
                               escape(gateway_view(gateway, route, upstream)))
        parts: list[RenderableType] = [ports, routes]
        if any(u.get("runtime") == "docker" for u in units):
            parts.append(_docker_network(self.settings))
        return Group(*parts)

    def novnc(self) -> RenderableType:
        try:
            info = self.client.get("/novnc")
        except ControlError:
            info = self.info.novnc
        by_name = {u["name"]: u for u in self.units()}
        lines = [f"noVNC     {info.get('url', '-')}",
                 f"password  {info.get('password') or 'not generated yet (x11vnc creates it)'}"]
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("UNIT", "STATE", "HEALTH", "REASON"):
            table.add_column(column)
        for name in DESKTOP_UNITS:
            unit = by_name.get(name)
            if unit is None:
                table.add_row(name, "[dim]not installed[/]", "-", "")
                continue
            state = escape(unit["state"])
            table.add_row(name, f"[{STATE_STYLES.get(state, '')}]{state}[/]",
                          escape(unit["health"]), escape(unit.get("reason") or ""))
        return Group(Text("\n".join(lines)), table)

    def containers(self) -> RenderableType:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("UNIT", "RUNTIME", "PID", "CPU", "MEM", "STATE"):
            table.add_column(column, justify="right" if column in ("CPU", "MEM") else "left")
        for unit in self.units():
            if unit["state"] in ("inactive", "skipped"):
                continue
            table.add_row(escape(unit["name"]), escape(unit.get("runtime") or "-"),
                          str(unit.get("pid") or "-"), format_cpu(unit.get("cpu_percent")),
                          format_bytes(unit.get("memory_bytes")), escape(unit["state"]))
        return table

    def logs(self) -> RenderableType:
        from llm_supervisor.cli.merged_logs import recent_lines

        return Text("\n".join(recent_lines(self.client, self.lines)) or "(no output yet)")

    def render(self, views: list[str]) -> RenderableType:
        parts: list[RenderableType] = []
        for view in views:
            parts.append(Rule(view, align="left", style="dim"))
            render: Callable[[], RenderableType] = getattr(self, view)
            parts.append(render())
        return Group(*parts)


def _tree_pids(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.Error:
        return {pid}


def _listening_by_pid() -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return found
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.pid:
            host, port = connection.laddr
            found.setdefault(connection.pid, []).append(
                f"{f'[{host}]' if ':' in host else host}:{port}")
    return found


def _upstream_health(upstream: str, health_path: str | None) -> str:
    url = upstream.rstrip("/") + (health_path or "/")
    probe = probes.request("health", url, None, 2.0)
    if probe.status is None:
        return f"[red]down[/] {escape(probe.error)}"
    style = "green" if probe.ok else "yellow"
    return f"[{style}]HTTP {probe.status}[/] {probe.latency_s * 1000:.0f} ms"


def _docker_network(settings: Any) -> RenderableType:
    """Networks and containers carrying this daemon's ownership label (docker_labels)."""
    try:
        import docker

        from llm_supervisor.runtimes.docker.labels import OWNER, owner_id

        client = docker.from_env(timeout=5)
        ours = f"{OWNER}={owner_id(settings.state_dir)}"
        table = Table(title="docker", box=None, header_style="bold", pad_edge=False,
                      title_justify="left")
        for column in ("NETWORK", "CONTAINER", "STATUS", "ADDRESS"):
            table.add_column(column)
        for network in client.networks.list(filters={"label": ours}):
            network.reload()
            containers = network.attrs.get("Containers") or {}
            if not containers:
                table.add_row(escape(network.name), "-", "-", "-")
            for container_id, detail in containers.items():
                status = client.containers.get(container_id).status
                table.add_row(escape(network.name), escape(detail.get("Name", container_id[:12])),
                              escape(status), escape(detail.get("IPv4Address", "")))
        return table
    except Exception as exc:  # no engine, no SDK: say so instead of failing the view
        return Text(f"docker: {exc}")


def selected_views(args: argparse.Namespace) -> list[str]:
    views = [view for view in VIEWS if getattr(args, view, False)]
    return views or ["summary"]


def run(client: ControlClient, settings: Any, args: argparse.Namespace,
        console: Console | None = None) -> int:
    console = console or make_console()
    monitor = Monitor(client, settings, lines=args.lines)
    views = selected_views(args)
    if args.live is None:
        console.print(monitor.render(views))
        return 0
    interval = max(0.2, args.live)
    if not console.is_terminal:  # a pipe: one full refresh after another, separated
        try:
            while True:
                console.print(Rule(time.strftime("%H:%M:%S")))
                console.print(monitor.render(views))
                time.sleep(interval)
        except KeyboardInterrupt:
            return 0
    from rich.live import Live

    with Live(monitor.render(views), console=console, auto_refresh=False,
              screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(monitor.render(views), refresh=True)
        except KeyboardInterrupt:
            return 0
