"""Built-in plugin: the operator dashboard and the merged log feed.

- ``supervisor_started``: follow every unit's output (:mod:`.log_feed`), poll the model service
  (:mod:`.model_watch`), keep the charts' time series and the event timeline (one sampling
  task, :mod:`.history`), serve the dashboard on ``DASHBOARD_BIND_ADDRESS:DASHBOARD_PORT`` (0: off;
  the address is 127.0.0.1 unless the operator opens it, whatever ``BIND_ADDRESS`` says; opened
  beyond loopback it asks other peers for a basic-auth password kept in a 0600 file, and says so
  at start). A port already taken is a warning, never a reason for the daemon to stop.
- ``control_routes``: ``GET /logs?tail=N[&follow=1][&format=json]`` on the control socket
  (``llm-supervisorctl logs --all [-f]``) and ``GET /dashboard`` (its URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

import structlog

from llm_supervisor.dashboard.app import build_app
from llm_supervisor.dashboard.history import History, Sampler
from llm_supervisor.dashboard.log_feed import LogFeed
from llm_supervisor.dashboard.model_watch import POLL_S, ModelWatch
from llm_supervisor.dashboard.security import (
    BASIC_USER,
    Guard,
    ensure_password,
    is_loopback_bind,
    new_token,
)
from llm_supervisor.dashboard.timeline import Timeline
from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.view import SupervisorView

if TYPE_CHECKING:
    from sanic import Sanic

log = structlog.get_logger("llm_supervisor.dashboard")


class DashboardPlugin:
    def __init__(self) -> None:
        self.supervisor: SupervisorView | None = None
        self.feed: LogFeed | None = None
        self.model: ModelWatch | None = None
        self.history: History | None = None
        self.timeline: Timeline | None = None
        self.sampler: Sampler | None = None
        self.server: Any = None
        self.app: Any = None
        self.url: str | None = None
        self.error: str | None = None
        self.auth: dict[str, str] | None = None
        self._starting: asyncio.Task[None] | None = None

    @hookimpl
    def supervisor_started(self, supervisor: SupervisorView) -> None:
        self.supervisor = supervisor
        self.feed = LogFeed(supervisor)
        self.feed.start()
        settings = supervisor.settings
        self.model = ModelWatch(supervisor, poll_s=min(POLL_S, settings.dashboard_sample_s))
        self.model.start()
        self.history = History(settings.dashboard_sample_s, settings.dashboard_history_s)
        self.timeline = Timeline()
        self.sampler = Sampler(supervisor, self.model, self.history, self.timeline)
        self.sampler.start()
        if supervisor.settings.dashboard_port:
            self._starting = asyncio.ensure_future(self._serve(supervisor))

    async def _serve(self, supervisor: SupervisorView) -> None:
        settings = supervisor.settings
        host, port = settings.dashboard_bind_address, settings.dashboard_port
        password = None
        if not is_loopback_bind(host):
            password_file = ensure_password(settings.state_dir)
            password = password_file.read_text().strip()
            self.auth = {"user": BASIC_USER, "password_file": str(password_file)}
        guard = Guard(host, port, new_token(), password)
        app = build_app(supervisor, guard, self.feed, self.model,
                        name=f"llm_supervisord_dashboard_{os.getpid()}",
                        max_streams=settings.dashboard_max_streams, history=self.history,
                        timeline=self.timeline)
        self.app = app
        try:
            server = await app.create_server(host=host, port=port, return_asyncio_server=True)
            assert server is not None
            await server.startup()
            if server.server is None:
                await server
            await server.after_start()
        except OSError as exc:
            self.error = f"cannot listen on {host}:{port} ({exc.strerror or exc}); set " \
                         "DASHBOARD_PORT to a free port (0 turns the dashboard off)"
            log.warning("dashboard_unavailable", error=self.error)
            return
        except Exception as exc:  # never lost in a task nobody awaits: said, and shown by status
            self.error = f"the dashboard failed to start ({type(exc).__name__}: {exc})"
            log.error("dashboard_unavailable", error=self.error)
            return
        self.server = server
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{shown}:{port}/"
        if self.auth is not None:
            log.warning("dashboard_open_beyond_loopback", url=self.url, bind=host,
                        note="peers other than this daemon's user need HTTP basic auth",
                        **self.auth)
        else:
            log.info("dashboard_started", url=self.url)

    @hookimpl
    def supervisor_stopping(self, supervisor: SupervisorView) -> None:
        """Stop listening now (the daemon is going away); the rest finishes in the background."""
        if self.server is not None:
            self.server.close()
        asyncio.ensure_future(self.close())

    async def close(self) -> None:
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None
        if self.app is not None:
            await self.app.ctx.live.close()
        for part in (self.sampler, self.feed, self.model):
            if part is not None:
                await part.close()

    @hookimpl
    def control_routes(self, app: Sanic, supervisor: SupervisorView) -> None:
        from sanic import Request, response

        @app.get("/dashboard")
        async def dashboard(request: Request) -> response.HTTPResponse:
            return response.json({"url": self.url, "error": self.error, "auth": self.auth})

        @app.get("/logs")
        async def merged_logs(request: Request) -> response.BaseHTTPResponse | None:
            if self.feed is None:
                return response.json({"error": {"message": "the daemon is still starting"}},
                                     status=503)
            try:
                tail = int(request.args.get("tail", "100"))
            except ValueError:
                return response.json({"error": {"message": "tail must be an integer"}},
                                     status=400)
            as_json = request.args.get("format") == "json"

            def render(line: Any) -> str:
                return json.dumps(line.as_dict()) if as_json else line.format()

            if request.args.get("follow", "0") not in ("1", "true", "yes"):
                return response.text("".join(render(line) + "\n"
                                             for line in self.feed.tail(tail)))
            queue = self.feed.subscribe()
            lines = self.feed.tail(tail)
            try:
                stream = await request.respond(content_type="text/plain; charset=utf-8")
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    if lines:
                        await stream.send("".join(render(line) + "\n" for line in lines))
                    while True:
                        await stream.send(render(await queue.get()) + "\n")
            finally:
                self.feed.unsubscribe(queue)
            return None


def make_plugin() -> DashboardPlugin:
    return DashboardPlugin()
