"""The control API: HTTP/JSON on a Unix socket created with mode 0600.

``curl --unix-socket SOCK http://localhost/units`` works. The routes are the table of
:mod:`.commands` (README, "Control socket"), each answered by a :class:`ControlHandlers` method.

Plugins add theirs through the ``control_routes`` hook: ``GET /metrics`` (built-in metrics),
``GET /gateway`` (gateway), ``GET /novnc`` (desktop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from sanic import Request, Sanic, response
from sanic.server.async_server import AsyncioServer

from llm_supervisor.core.errors import SupervisorError
from llm_supervisor.core.logging_setup import reopen_daemon_log
from llm_supervisor.daemon.commands import COMMANDS
from llm_supervisor.supervisor.manager import Manager, UnitNotFound
from llm_supervisor.supervisor.repair_flow import RepairAlreadyRunning
from llm_supervisor.supervisor.rolling import RollingRestartFailed
from llm_supervisor.units.graph import DependencyCycleError
from llm_supervisor.units.replicas import instances


class SocketPathError(SupervisorError):
    """The control socket's path is taken: by a live daemon, or by something that is not a
    socket (never deleted)."""


def _error(status: int, message: str, kind: str = "error") -> response.HTTPResponse:
    return response.json({"error": {"type": kind, "message": message}}, status=status)


def _flag(request: Request, name: str) -> bool:
    return request.args.get(name, "0") in ("1", "true", "yes")


class ControlHandlers:
    """The daemon's side of every command in :data:`~.commands.COMMANDS`, one method each."""

    def __init__(self, manager: Manager, request_shutdown: Callable[[str], None]):
        self.manager = manager
        self.request_shutdown = request_shutdown

    async def ping(self, request: Request) -> response.HTTPResponse:
        manager = self.manager
        return response.json({"ok": True, "pid": os.getpid(), "target": manager.target,
                              "target_error": manager.target_error or None})

    async def units(self, request: Request) -> response.HTTPResponse:
        return response.json(self.manager.status())

    async def unit(self, request: Request, name: str) -> response.HTTPResponse:
        runner = self.manager.runner(name)
        return response.json({**self.manager.status_of(runner), "log_tail": runner.log.last(20)})

    async def start(self, request: Request, name: str) -> response.HTTPResponse:
        return response.json({"started": self.manager.start_unit(name)})

    async def stop(self, request: Request, name: str) -> response.HTTPResponse:
        return response.json({"stopped": await self.manager.stop_unit(name)})

    async def restart(self, request: Request, name: str) -> response.HTTPResponse:
        manager = self.manager
        if _flag(request, "rolling"):
            try:
                restarted = await manager.restart_rolling(name)
            except RollingRestartFailed as exc:
                return _error(500, str(exc), "rolling_restart_failed")
            return response.json({
                **manager.status_of(manager.runner(name)), "rolling": True,
                "instances": [manager.status_of(manager.runners[n]) for n in restarted]})
        await manager.restart_unit(name)
        return response.json(manager.status_of(manager.runner(name)))

    async def repair(self, request: Request, name: str) -> response.HTTPResponse:
        manager = self.manager
        runner = manager.runner(name)
        verify_only = _flag(request, "verify_only")
        if not verify_only and len(instances(manager.loaded.units, runner.name)) > 1:
            try:  # replicas: drained out of the gateway first, the others restarted after
                result = await manager.repair_rolling(name)
            except RollingRestartFailed as exc:
                return _error(500, str(exc), "rolling_restart_failed")
        else:
            result = await runner.repair_by_hand(verify_only=verify_only)
        if result is None:
            return _error(501, f"no plugin can repair {runner.unit.short_name}", "no_repairer")
        return response.json(result, status=200 if result.get("ok") else 500)

    async def logs(self, request: Request, name: str) -> response.BaseHTTPResponse | None:
        runner = self.manager.runner(name)
        try:
            tail = int(request.args.get("tail", "100"))
        except ValueError:
            return _error(400, "tail must be an integer", "bad_request")
        lines = runner.log.read_file_tail(tail)
        if not _flag(request, "follow"):
            return response.text("".join(line + "\n" for line in lines))
        stream = await request.respond(content_type="text/plain; charset=utf-8")
        follower = runner.log.follow()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            if lines:
                await stream.send("".join(line + "\n" for line in lines))
            async for line in follower:
                await stream.send(line + "\n")
        await follower.aclose()
        return None

    async def events(self, request: Request) -> None:
        stream = await request.respond(content_type="text/event-stream")
        queue = self.manager.subscribe()
        try:
            await stream.send(": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    await stream.send(": keep-alive\n\n")
                    continue
                await stream.send(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.manager.unsubscribe(queue)

    async def reload(self, request: Request) -> response.HTTPResponse:
        return response.json(await self.manager.reload())

    async def reset(self, request: Request) -> response.HTTPResponse:
        return response.json(await self.manager.reset())

    async def shutdown(self, request: Request) -> response.HTTPResponse:
        self.manager.purge_on_exit = _flag(request, "purge")
        self.request_shutdown("shutdown requested over the control socket")
        return response.json({"ok": True})

    async def reopen_logs(self, request: Request) -> response.HTTPResponse:
        reopen_all_logs(self.manager)
        return response.json({"ok": True})

    async def errors(self, request: Request) -> response.HTTPResponse:
        return response.json(self.manager.errors())

    async def plugins(self, request: Request) -> response.HTTPResponse:
        describe = getattr(self.manager.plugins, "describe", None)
        return response.json(describe() if describe is not None else [])


def build_app(manager: Manager, request_shutdown: Callable[[str], None]) -> Sanic:
    app = Sanic("llm_supervisord_control", configure_logging=False)
    app.config.MOTD = False
    app.config.ACCESS_LOG = False
    app.config.KEEP_ALIVE_TIMEOUT = 30
    app.config.RESPONSE_TIMEOUT = 3600

    @app.exception(UnitNotFound)
    async def unit_not_found(request: Request, exc: UnitNotFound) -> response.HTTPResponse:
        return _error(404, f"no such unit: {exc.args[0]}", "unit_not_found")

    @app.exception(RepairAlreadyRunning)
    async def repair_busy(request: Request, exc: RepairAlreadyRunning) -> response.HTTPResponse:
        return _error(409, str(exc), "repair_already_running")

    @app.exception(DependencyCycleError)
    async def cycle(request: Request, exc: DependencyCycleError) -> response.HTTPResponse:
        return _error(409, str(exc), "dependency_cycle")

    handlers = ControlHandlers(manager, request_shutdown)
    for command in COMMANDS:
        app.add_route(getattr(handlers, command.handler), command.route,
                      methods=[command.method], name=command.handler)
    manager.events.control_routes(app, manager)
    return app


def reopen_all_logs(manager: Manager) -> None:
    """Every unit log and ``daemon.log`` (``reopen-logs``, SIGUSR2)."""
    for runner in manager.runners.values():
        runner.log.reopen()
    reopen_daemon_log()


def bind_private_socket(path: Path) -> socket.socket:
    """Bind a Unix socket that is mode 0600 from its first instant (umask, not a later chmod).

    Call it holding the daemon's lock. A socket left by a dead daemon is replaced; a live one,
    or anything at ``path`` that is not a socket, raises :class:`SocketPathError` and nothing is
    deleted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _clear_stale_socket(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = "directory" if stat.S_ISDIR(mode) else "symlink" if stat.S_ISLNK(mode) else "file"
        raise SocketPathError(f"{path} exists and is a {kind}, not a socket; nothing was deleted. "
                              "Move it away, or give another path with --socket")
    if socket_in_use(path):
        raise SocketPathError(f"something already answers on {path}; stop it first "
                              "(`llm-supervisord stop`) or give another path with --socket")
    path.unlink()


def socket_in_use(path: Path) -> bool:
    """True when a live daemon answers on ``path`` (a stale socket file is not "in use")."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


async def serve(app: Sanic, sock: socket.socket) -> AsyncioServer:
    server = await app.create_server(sock=sock, return_asyncio_server=True)
    assert server is not None
    await server.startup()
    if server.server is None:  # older Sanic: the asyncio server is created on await
        await server
    await server.after_start()
    return server


