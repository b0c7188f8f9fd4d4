"""The daemon's shell, in explicit steps (as uvicorn's ``Server.serve``):

- :meth:`Daemon.startup`: state dir → lock → control socket → the units' account → plugins and
  units → clean up after a predecessor → control API → signals → ``supervisor_started`` → the
  target;
- :meth:`Daemon.main_loop`: serve until asked to stop;
- :meth:`Daemon.shutdown`: ``supervisor_stopping`` → stop units in reverse order → purge if asked
  → close the control API → close the manager → remove the socket → release the lock.

Shutdown undoes exactly what startup did, whichever step failed: the socket is removed and the
lock released even when loading units or a plugin raised.

Signals: SIGTERM/SIGINT shut down, SIGHUP reloads unit files, SIGUSR2 reopens log files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import structlog
from sanic.server.async_server import AsyncioServer

from llm_supervisor.config import Settings
from llm_supervisor.daemon import control
from llm_supervisor.daemon import unit_user as unit_user_setup
from llm_supervisor.daemon.pidlock import DaemonError, PidLock
from llm_supervisor.plugins.manager import Plugins
from llm_supervisor.supervisor.manager import Manager

__all__ = ["Daemon", "DaemonError", "prepare_state_dir", "run_daemon"]

log = structlog.get_logger("llm_supervisor.daemon")

SHUTDOWN_RESPONSE_GRACE_S = 0.05  # let the /shutdown response leave before the socket closes


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


class Daemon:
    def __init__(self, settings: Settings, target: str | None = None):
        self.settings = settings
        self.target = target
        self.lock = PidLock(settings.state_dir / "daemon.pid")
        self.sock: socket.socket | None = None
        self.manager: Manager | None = None
        self.server: AsyncioServer | None = None
        self.started = False  # supervisor_started was fired
        self.stop = asyncio.Event()
        self.stop_reason = "daemon shutting down"
        self._reloads: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def serve(self) -> int:
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
        return 0

    def request_shutdown(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop.set()

    # ------------------------------------------------------------------ startup
    async def startup(self) -> None:
        settings = self.settings
        prepare_state_dir(settings.state_dir)
        self.lock.acquire()
        # Bound right after the lock, before anything slow: a second daemon finds the lock taken,
        # and clients connecting while units load wait in the backlog instead of seeing no daemon.
        try:
            self.sock = control.bind_private_socket(settings.socket)
        except (control.SocketPathError, OSError) as exc:
            raise DaemonError(str(exc)) from None
        try:  # before the units load: ${UNIT_USER} names whom they run as
            unit_user_setup.prepare(settings)
        except unit_user_setup.UnitUserError as exc:
            raise DaemonError(str(exc)) from None
        manager = self.manager = Manager(settings, Plugins())
        manager.load()
        await manager.recover_previous()
        app = control.build_app(manager, self.request_shutdown)
        self.server = await control.serve(app, self.sock)
        self._install_signal_handlers()
        log.info("daemon_started", pid=os.getpid(), socket=str(settings.socket),
                 units_dir=str(settings.units_dir), units=len(manager.runners),
                 errors=len(manager.loaded.errors))
        manager.events.supervisor_started(manager)
        self.started = True
        with contextlib.suppress(KeyError):  # a missing target: manager.target_error says it
            await manager.start_target(self.target)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_shutdown, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_shutdown, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        loop.add_signal_handler(signal.SIGUSR2, self._reopen_logs)

    def _reload_on_signal(self) -> None:
        task = asyncio.ensure_future(self._reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        assert self.manager is not None
        try:
            await self.manager.reload()
        except Exception as exc:  # the daemon keeps serving; the error is in the log
            log.exception("reload_failed", error=str(exc), error_type=type(exc).__name__)

    def _reopen_logs(self) -> None:
        if self.manager is not None:
            control.reopen_all_logs(self.manager)

    # ------------------------------------------------------------------ main loop
    async def main_loop(self) -> None:
        await self.stop.wait()
        log.info("daemon_stopping", reason=self.stop_reason)

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self) -> None:
        """Undo what startup did, each step on its own: one that fails is logged, the rest run."""
        manager = self.manager
        if manager is not None:
            if self.started:
                await self._step("supervisor_stopping", manager.events.supervisor_stopping,
                                 manager)
            await self._step("stop_units", manager.stop_all, self.stop_reason)
            if manager.purge_on_exit:
                await self._step("purge", self._purge, manager)
        if self.server is not None:
            await asyncio.sleep(SHUTDOWN_RESPONSE_GRACE_S)
            await self._step("close_control_api", self._close_server, self.server)
        if manager is not None:
            await self._step("close_manager", manager.close)
        if self.sock is not None:
            self.sock.close()
            with contextlib.suppress(FileNotFoundError):
                self.settings.socket.unlink()
        self.lock.release()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2):
            loop.remove_signal_handler(signum)
        log.info("daemon_stopped")

    @staticmethod
    async def _step(name: str, function: Callable[..., object], *args: object) -> None:
        try:
            result = function(*args)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            log.exception("shutdown_step_failed", step=name, error=str(exc),
                          error_type=type(exc).__name__)

    @staticmethod
    async def _purge(manager: Manager) -> None:
        log.info("purged", removed=await manager.purge())

    @staticmethod
    async def _close_server(server: AsyncioServer) -> None:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def run_daemon(settings: Settings, target: str | None = None) -> int:
    return await Daemon(settings, target).serve()
