"""The daemon's lifecycle: lock → load units → clean up after a predecessor → open the control
socket → start the target → serve until asked to stop → stop units in reverse order → close.

Signals: SIGTERM/SIGINT shut down, SIGHUP reloads unit files, SIGUSR2 reopens log files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import stat
from pathlib import Path

import structlog

from llm_supervisor.config import Settings
from llm_supervisor.core.errors import SupervisorError
from llm_supervisor.daemon import control
from llm_supervisor.daemon import unit_user as unit_user_setup
from llm_supervisor.plugins.manager import Plugins
from llm_supervisor.supervisor.manager import Manager

log = structlog.get_logger("llm_supervisor.daemon")


class DaemonError(SupervisorError):
    pass


class _PidLock:
    """An flock on ``daemon.pid``: one daemon per state dir, released even on SIGKILL."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "?"
            handle.close()
            raise DaemonError(f"another llm-supervisord (pid {other}) uses {self.path.parent}; "
                              "stop it with `llm-supervisord stop`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.handle.close()


def prepare_state_dir(path: Path) -> None:
    """Create the state directory private (0700). An existing one keeps its mode (the operator
    chose it), with a warning when others may write into it."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("state_dir_writable_by_others", state_dir=str(path), mode=oct(mode),
                        hint=f"others may replace the socket or the records: chmod go-w {path}")


def _bind_control_socket(settings: Settings, lock: _PidLock) -> socket.socket:
    try:
        return control.bind_private_socket(settings.socket)
    except (control.SocketPathError, OSError) as exc:
        lock.release()
        raise DaemonError(str(exc)) from None


async def _reload_on_signal(manager: Manager) -> None:
    try:
        await manager.reload()
    except Exception as exc:  # the daemon keeps serving; the error is in the log
        log.exception("reload_failed", error=str(exc), error_type=type(exc).__name__)


async def run_daemon(settings: Settings, target: str | None = None) -> int:
    prepare_state_dir(settings.state_dir)
    lock = _PidLock(settings.state_dir / "daemon.pid")
    lock.acquire()
    # Bound right after the lock, before anything slow: a second daemon finds the lock taken,
    # and clients connecting while units load wait in the backlog instead of seeing no daemon.
    sock = _bind_control_socket(settings, lock)
    try:  # before the units load: ${UNIT_USER} names whom they run as
        unit_user_setup.prepare(settings)
    except unit_user_setup.UnitUserError as exc:
        sock.close()
        settings.socket.unlink(missing_ok=True)
        lock.release()
        raise DaemonError(str(exc)) from None
    stop = asyncio.Event()
    stop_reason = ["daemon shutting down"]

    def request_shutdown(reason: str) -> None:
        stop_reason[0] = reason
        stop.set()

    plugins = Plugins()
    manager = Manager(settings, plugins)
    manager.load()
    await manager.recover_previous()
    app = control.build_app(manager, request_shutdown)
    server = await control.serve(app, sock)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, request_shutdown, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, request_shutdown, "SIGINT")
    reloads: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    def reload_on_signal() -> None:
        task = asyncio.ensure_future(_reload_on_signal(manager))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
    loop.add_signal_handler(signal.SIGUSR2, lambda: control.reopen_all_logs(manager))
    log.info("daemon_started", pid=os.getpid(), socket=str(settings.socket),
             units_dir=str(settings.units_dir), units=len(manager.runners),
             errors=len(manager.loaded.errors))
    manager.events.supervisor_started(manager)
    with contextlib.suppress(KeyError):  # a missing target: manager.target_error says it
        await manager.start_target(target)
    await stop.wait()
    log.info("daemon_stopping", reason=stop_reason[0])
    manager.events.supervisor_stopping(manager)
    await manager.stop_all(stop_reason[0])
    if manager.purge_on_exit:
        log.info("purged", removed=await manager.purge())
    await asyncio.sleep(0.05)  # let the /shutdown response leave before the socket closes
    server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), 2)
    await manager.close()
    with contextlib.suppress(FileNotFoundError):
        settings.socket.unlink()
    lock.release()
    log.info("daemon_stopped")
    return 0
