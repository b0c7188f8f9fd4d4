"""``llm-supervisorctl``: talk to a running llm-supervisord over its control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from llm_supervisor.cli import export as export_cli
from llm_supervisor.cli import models as models_cli
from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning
from llm_supervisor.cli.common import (
    LOCATION_OPTIONS,
    add_location_options,
    settings_from,
    socket_from,
)
from llm_supervisor.cli.monitor_args import add_arguments as add_monitor_arguments
from llm_supervisor.cli.parsing import LeanParser, Subcommands, subcommand_in
from llm_supervisor.cli.status_rows import print_plain_status
from llm_supervisor.daemon.commands import BY_VERB

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any


def _parser(only: str | None = None) -> tuple[argparse.ArgumentParser, Subcommands]:
    """The parser, with only the subcommand ``only`` built (every one when None)."""
    parser = LeanParser(prog="llm-supervisorctl", description="Control a running llm-supervisord.")
    add_location_options(parser)
    sub = Subcommands(parser, only, dest="command", required=True)
    status = sub.add_parser("status", help="show units")
    status.add_argument("unit", nargs="?")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--live", action="store_true", help="refresh until Ctrl-C")
    for name in ("start", "stop"):
        sub.add_parser(name, help=BY_VERB[name].help).add_argument("unit")
    restart = sub.add_parser("restart", help="restart a unit or target")
    restart.add_argument("unit")
    restart.add_argument("--rolling", action="store_true",
                         help="one instance at a time, each drained out of the gateway first")
    repair = sub.add_parser("repair", help="verify and repair a unit's files, then restart it")
    repair.add_argument("unit")
    repair.add_argument("--verify-only", action="store_true", help="report, change nothing")
    logs = sub.add_parser("logs", help="show a unit's output (--all: every unit, merged by time)")
    logs.add_argument("unit", nargs="?")
    logs.add_argument("--all", action="store_true", help="every unit's output, merged by time")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100)
    verify = sub.add_parser("verify", help="check unit files (like systemd-analyze verify)")
    verify.add_argument("files", nargs="*", type=Path)
    verify.add_argument("--units-dir", type=Path)
    add_monitor_arguments(sub.add_parser(
        "monitor", help="the old monitor.sh: --summary --model --api --network --novnc "
                        "--containers --logs, --live [SECONDS]"))
    for name in ("reload", "reset"):
        sub.add_parser(name, help=BY_VERB[name].help)
    shutdown = sub.add_parser("shutdown", help="stop every unit and the daemon")
    shutdown.add_argument("--purge", action="store_true",
                          help="also remove volumes, caches and logs we own")
    shutdown.add_argument("--yes", action="store_true", help="do not ask before purging")
    for name in ("plugins", "events", "reopen-logs", "errors"):
        sub.add_parser(name, help=BY_VERB[name].help)
    doctor = sub.add_parser("doctor", help="can the stack run here? each problem with its fix")
    doctor.add_argument("--units-dir", type=Path)
    novnc = sub.add_parser("novnc", help="the test desktop's noVNC URL and password")
    novnc.add_argument("--json", action="store_true", help="machine-readable output")
    export_cli.add_parser(sub)
    models_cli.add_parser(sub)
    images = sub.add_parser("images", help="Docker images of the stack (no registry needed)")
    images.add_argument("images_command", choices=["build"],
                        help="build: a local Debian base when none exists, then every image")
    images.add_argument("units", nargs="*", help="only these units' images")
    images.add_argument("-q", "--quiet", action="store_true", help="no per-step build output")
    return parser, sub


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed with only its subcommand's parser built (cli/parsing.py)."""
    argv = sys.argv[1:] if argv is None else argv
    parser, sub = _parser(subcommand_in(argv, LOCATION_OPTIONS))
    if not sub.built:  # no subcommand or an unknown one: let argparse list them all
        parser, _ = _parser()
    return parser.parse_args(argv)


def _status(client: ControlClient, args: argparse.Namespace) -> int:
    def fetch() -> list[dict[str, Any]]:
        if args.unit:
            return [client.get(f"/units/{args.unit}")]
        return _send(client, "status")

    if args.json:
        units = fetch()
        keys = ("name", "state", "health", "health_detail", "pid", "restarts", "since",
                "last_exit", "reason", "runtime", "description", "repair_progress",
                "cpu_percent", "memory_bytes", "memory_max", "memory_cgroup_bytes", "heal",
                "port_holder")
        print(json.dumps([{k: u.get(k) for k in keys} for u in units], indent=2))
        return 0
    if args.live:
        # rich only for the live view: the plain table below is printed without it.
        from rich.live import Live

        from llm_supervisor.cli.render import status_table

        with Live(status_table(fetch()), refresh_per_second=2) as live:
            try:
                while True:
                    time.sleep(0.5)
                    live.update(status_table(fetch()))
            except KeyboardInterrupt:
                return 0
    units = fetch()
    print_plain_status(units, sys.stdout)
    if not args.unit:  # which gateway runs, its version (imported here: only status needs it)
        from llm_supervisor.cli.gateway_view import gateway_footer

        if footer := gateway_footer(client, units):
            print(footer)
    errors = [] if args.unit else _send(client, "errors")
    for error in errors:
        print(f"unit file error: {_format_error(error)}", file=sys.stderr)
    return 0


def _format_error(error: dict[str, Any]) -> str:
    where = error.get("file") or ""
    if error.get("line"):
        where += f":{error['line']}"
    key = f" {error['key']}:" if error.get("key") else ""
    return f"{where}:{key} {error['message']}" if where else error["message"]


def _verify(args: argparse.Namespace) -> int:
    from llm_supervisor.units.checks import cross_unit_problems
    from llm_supervisor.units.loader import load_directory, load_files

    settings = settings_from(args)
    variables = settings.expansion_vars()
    result = load_files(args.files, variables) if args.files else load_directory(
        settings.units_dir, variables)
    problems = [str(error) for error in (*result.errors, *cross_unit_problems(result))]
    for problem in problems:
        print(problem, file=sys.stderr)
    checked = len(args.files) if args.files else len(result.units) + len(result.errors)
    print(f"{checked} unit file(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def _logs(client: ControlClient, args: argparse.Namespace) -> int:
    if args.all:
        from llm_supervisor.cli.merged_logs import follow_lines, recent_lines

        try:
            if not args.follow:
                for line in recent_lines(client, args.lines):
                    print(line)
                return 0
            for line in follow_lines(client, args.lines):
                print(line, flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    if not args.unit:
        print("llm-supervisorctl logs: name a UNIT, or --all", file=sys.stderr)
        return 2
    if not args.follow:
        sys.stdout.write(client.request("GET", BY_VERB["logs"].path(args.unit),
                                        params={"tail": args.lines}).text)
        return 0
    try:
        for line in client.stream_lines(BY_VERB["logs"].path(args.unit),
                                        {"tail": args.lines, "follow": 1}):
            print(line, flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _shutdown(args: argparse.Namespace) -> int:
    from llm_supervisor.cli.purge import stop_stack

    return stop_stack(settings_from(args), 180, args.purge, args.yes)


def _plugins(client: ControlClient, args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from llm_supervisor.cli.render import make_console

    table = Table(box=None, header_style="bold")
    for column in ("PLUGIN", "FROM", "HOOKS"):
        table.add_column(column, overflow="fold")
    for plugin in _send(client, "plugins"):
        origin = "built-in" if plugin["builtin"] else (plugin["distribution"] or "entry point")
        table.add_row(escape(plugin["name"]), escape(origin), escape(", ".join(plugin["hooks"])))
    make_console().print(table)
    return 0


def _novnc(args: argparse.Namespace) -> int:
    """URL and password of the test desktop: from the daemon, else from the 0600 file in the
    state dir (readable only by the daemon's user)."""
    settings = settings_from(args)
    try:
        info = ControlClient(settings.socket, timeout=10).get("/novnc")
    except (DaemonNotRunning, ControlError):
        from llm_supervisor.desktop.info import novnc_info

        info = novnc_info(settings)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"noVNC:    {info['url']}")
    if info.get("password"):
        print(f"password: {info['password']}")
    else:
        print(f"password: not generated yet (it is created when x11vnc first starts; "
              f"file {info['password_file']})")
    if info.get("state") and info["state"] != "running":
        print(f"novnc unit: {info['state']}" + (f" ({info['reason']})" if info.get("reason") else ""))
    return 0 if info.get("password") else 1


def _repair_result(body: str) -> dict[str, Any] | None:
    try:
        result = json.loads(body)
    except ValueError:
        return None
    return result if isinstance(result, dict) and "ok" in result else None


def _send(client: ControlClient, verb: str, unit: str | None = None,
          params: dict[str, Any] | None = None) -> Any:
    """The request of ``verb`` from the command table (:mod:`llm_supervisor.daemon.commands`)."""
    command = BY_VERB[verb]
    if command.method == "POST":
        return client.post(command.path(unit), params=params)
    return client.get(command.path(unit), params=params)


def _start_stop(client: ControlClient, args: argparse.Namespace) -> int:
    result = _send(client, args.command, args.unit)
    names = result.get("started") or result.get("stopped") or []
    print(f"{args.command}: {', '.join(n.removesuffix('.service') for n in names) or 'nothing'}")
    return 0


def _restart(client: ControlClient, args: argparse.Namespace) -> int:
    if args.rolling:
        result = _send(client, "restart", args.unit, {"rolling": 1})
        for unit in result["instances"]:
            print(f"restart: {unit['name'].removesuffix('.service')} is {unit['state']} "
                  f"({unit['health']})")
        return 0
    unit = _send(client, "restart", args.unit)
    print(f"restart: {unit['name']} is {unit['state']}")
    return 0


def _repair(client: ControlClient, args: argparse.Namespace) -> int:
    try:
        result = _send(client, "repair", args.unit,
                       {"verify_only": "1" if args.verify_only else "0"})
    except ControlError as exc:
        # A repair that ran but did not succeed (or found problems) is HTTP 500 whose body
        # is the RepairResult itself: show it like a success, not as raw JSON.
        result = _repair_result(str(exc))
        if result is None:
            print(f"repair failed: {exc}", file=sys.stderr)
            return 1
    print(result.get("message", ""))
    for problem in result.get("details", {}).get("problems", []):
        print(f"  {problem}")
    return 0 if result.get("ok") else 1


def _reload(client: ControlClient, args: argparse.Namespace) -> int:
    summary = _send(client, "reload")
    for key in ("changed", "added", "removed"):
        if summary[key]:
            print(f"{key}: {', '.join(summary[key])}")
    for error in summary["errors"]:
        print(f"unit file error: {error}", file=sys.stderr)
    print("reloaded" + (" (nothing changed)" if not any(
        summary[k] for k in ("changed", "added", "removed")) else ""))
    return 1 if summary["errors"] else 0


def _reset(client: ControlClient, args: argparse.Namespace) -> int:
    print(json.dumps(_send(client, "reset"), indent=2))
    return 0


def _reopen_logs(client: ControlClient, args: argparse.Namespace) -> int:
    _send(client, "reopen-logs")
    print("log files reopened")
    return 0


def _errors(client: ControlClient, args: argparse.Namespace) -> int:
    for error in _send(client, "errors"):
        print(_format_error(error))
    return 0


def _events(client: ControlClient, args: argparse.Namespace) -> int:
    try:
        for line in client.stream_lines(BY_VERB["events"].path()):
            if line.startswith("data: "):
                print(line[6:], flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _monitor(client: ControlClient, args: argparse.Namespace) -> int:
    from llm_supervisor.cli import monitor

    return monitor.run(client, settings_from(args), args)


def _images(args: argparse.Namespace) -> int:
    from llm_supervisor.cli.images import build as build_images

    return build_images(args.units, args.quiet)


def _doctor(args: argparse.Namespace) -> int:
    from llm_supervisor.cli.doctor import report, run_checks

    return report(run_checks(settings_from(args)))


# Verbs answered here, without the daemon (or around it: shutdown waits for it to go).
LOCAL: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _verify, "export": export_cli.run, "images": _images, "novnc": _novnc,
    "doctor": _doctor, "shutdown": _shutdown,
}
# Verbs that talk to the daemon; each sends the table's request for its verb.
REMOTE: dict[str, Callable[[ControlClient, argparse.Namespace], int]] = {
    "models": models_cli.run, "status": _status, "start": _start_stop, "stop": _start_stop,
    "restart": _restart,
    "repair": _repair, "logs": _logs, "monitor": _monitor, "reload": _reload, "reset": _reset,
    "plugins": _plugins, "reopen-logs": _reopen_logs,
    "errors": _errors, "events": _events,
}


def run(args: argparse.Namespace) -> int:
    if args.command in LOCAL:
        return LOCAL[args.command](args)
    return REMOTE[args.command](ControlClient(socket_from(args), timeout=600), args)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return run(args)
    except DaemonNotRunning as exc:
        print(f"llm-supervisorctl: {exc}", file=sys.stderr)
        return 3
    except ControlError as exc:
        print(f"llm-supervisorctl: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `status | head`: the reader left; say nothing more, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


if __name__ == "__main__":
    sys.exit(main())
