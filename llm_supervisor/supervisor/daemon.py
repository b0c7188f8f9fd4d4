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
from pathlib import Path

import structlog

from llm_supervisor.config import Settings
from llm_supervisor.plugins.manager import Hooks
from llm_supervisor.supervisor import control
from llm_supervisor.supervisor.manager import Manager

log = structlog.get_logger("llm_supervisor.daemon")


class DaemonError(Exception):
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


async def run_daemon(settings: Settings, target: str | None = None) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    lock = _PidLock(settings.state_dir / "daemon.pid")
    lock.acquire()
    if control.socket_in_use(settings.socket):
        lock.release()
        raise DaemonError(f"something already answers on {settings.socket}")
    stop = asyncio.Event()
    stop_reason = ["daemon shutting down"]

    def request_shutdown(reason: str) -> None:
        stop_reason[0] = reason
        stop.set()

    hooks = Hooks()
    manager = Manager(settings, hooks)
    manager.load()
    await manager.recover_previous()
    app = control.build_app(manager, request_shutdown)
    sock = control.bind_private_socket(settings.socket)
    server = await control.serve(app, sock)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, request_shutdown, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, request_shutdown, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(manager.reload()))
    loop.add_signal_handler(signal.SIGUSR2,
                            lambda: [r.log.reopen() for r in manager.runners.values()])
    log.info("daemon_started", pid=os.getpid(), socket=str(settings.socket),
             units_dir=str(settings.units_dir), units=len(manager.runners),
             errors=len(manager.loaded.errors))
    hooks.call("supervisor_started", manager=manager)
    try:
        await manager.start_target(target)
    except KeyError as exc:
        log.error("target_not_found", target=str(exc.args[0]))
    await stop.wait()
    log.info("daemon_stopping", reason=stop_reason[0])
    hooks.call("supervisor_stopping", manager=manager)
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
