"""``llm-supervisord start [TARGET] [--foreground] [--units-dir DIR] [--socket PATH]`` and
``llm-supervisord stop``."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

from llm_supervisor.cli.client import ControlClient, DaemonNotRunning
from llm_supervisor.cli.common import (
    add_location_options,
    export_to_environment,
    settings_from,
)
from llm_supervisor.config import Settings
from llm_supervisor.config.state_ledger import record_new_entries


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-supervisord",
                                     description="Supervisor daemon for a local LLM stack.")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the daemon and bring TARGET up")
    start.add_argument("target", nargs="?", help="target or unit to bring up (default stack.target)")
    start.add_argument("--foreground", action="store_true", help="do not detach; log to stderr")
    start.add_argument("--log-file", type=Path,
                       help="log to this size-rotated file instead of stderr (the background "
                            "daemon uses STATE_DIR/daemon.log)")
    start.add_argument("--units-dir", type=Path, help="directory of unit files")
    start.add_argument("--wait", type=float, nargs="?", const=900.0, metavar="SECONDS",
                       help="after starting, wait until every unit is up (or settled)")
    add_location_options(start)
    stop = sub.add_parser("stop", help="stop every unit and the daemon")
    stop.add_argument("--timeout", type=float, default=120.0)
    stop.add_argument("--purge", action="store_true",
                      help="also remove what the daemon created: volumes, networks, our images, "
                           "model cache and converted models in the state dir, repair store, "
                           "logs (listed first)")
    stop.add_argument("--yes", action="store_true", help="do not ask before purging")
    add_location_options(stop)
    return parser


def _run_foreground(settings: Settings, target: str | None, log_file: Path | None) -> int:
    from llm_supervisor.core.lean_imports import import_without_unused_extras

    import_without_unused_extras()  # first: the daemon keeps whatever it imports
    from llm_supervisor.core.logging_setup import configure_logging
    from llm_supervisor.daemon.server import DaemonError, run_daemon

    record_new_entries(settings.state_dir)  # before anything is created: what purge may remove
    configure_logging(log_file=log_file, max_bytes=settings.log_max_bytes,
                      backups=settings.log_backups)
    try:
        return asyncio.run(run_daemon(settings, target))
    except DaemonError as exc:
        print(f"llm-supervisord: {exc}", file=sys.stderr)
        return 1


def _start_background(settings: Settings, target: str | None) -> int:
    client = ControlClient(settings.socket, timeout=5)
    try:
        info = client.get("/ping")
        print(f"llm-supervisord already running (pid {info['pid']}) on {settings.socket}")
        return 0
    except DaemonNotRunning:
        pass
    # New: private. Existing: left as the operator made it (the daemon warns if others can write).
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    record_new_entries(settings.state_dir)  # before daemon.log exists
    log_path = settings.state_dir / "daemon.log"
    # -P and cwd=/: the caller's directory (a ./llm_supervisor/ in /tmp) is never on the import
    # path of a daemon that may run as root.
    argv = [sys.executable, "-P", "-m", "llm_supervisor.cli.daemon_cli", "start", "--foreground",
            "--log-file", str(log_path)]
    if target:
        argv.append(target)
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                 env=export_to_environment(settings), start_new_session=True,
                                 close_fds=True, cwd="/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(f"llm-supervisord exited with {child.returncode}; last lines of {log_path}:",
                  file=sys.stderr)
            lines = log_path.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(lines), file=sys.stderr)
            return 1
        try:
            client.get("/ping")
            print(f"llm-supervisord started (pid {child.pid}); socket {settings.socket}; "
                  f"log {log_path}")
            return 0
        except DaemonNotRunning:
            time.sleep(0.05)
    print(f"llm-supervisord did not answer within 60 s; see {log_path}", file=sys.stderr)
    return 1


def _wait_until_up(settings: Settings, seconds: float) -> int:
    from llm_supervisor.cli.startup import wait_and_report

    return wait_and_report(ControlClient(settings.socket), settings, seconds)


def _stop(settings: Settings, args: argparse.Namespace) -> int:
    """On a terminal, asks whether to delete caches and volumes too (default no), as stop.sh."""
    from llm_supervisor.cli.purge import stop_stack

    return stop_stack(settings, args.timeout, args.purge, args.yes)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings_from(args)
    if args.command == "stop":
        return _stop(settings, args)
    if args.foreground:
        return _run_foreground(settings, args.target, args.log_file)
    code = _start_background(settings, args.target)
    if code == 0 and args.wait:
        code = _wait_until_up(settings, args.wait)
    return code


if __name__ == "__main__":
    sys.exit(main())
