"""The dashboard's HTTP app (Sanic, in the daemon's process and event loop)::

    GET  /                  the page (HTML, the action token embedded)
    GET  /api/units         every unit, the same objects as ``status --json``
    GET  /api/overview      model, gateway routes, links, last log lines
    GET  /api/events        server-sent events: ``snapshot`` (units + overview) on connect, on
                            every state/health change and every 2 s; ``log`` per output line
    POST /api/units/NAME/start|stop|restart   (X-Dashboard-Token required)
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from sanic import Request, Sanic, response

from llm_supervisor.dashboard import snapshot
from llm_supervisor.dashboard.security import TOKEN_HEADER, Guard
from llm_supervisor.plugins.view import SupervisorView

REFRESH_S = 2.0
LOG_LINES = 100


def _error(status: int, message: str) -> response.HTTPResponse:
    return response.json({"error": {"message": message}}, status=status)


def page_html(token: str) -> str:
    text = resources.files("llm_supervisor.dashboard").joinpath("index.html").read_text()
    return text.replace("__DASHBOARD_TOKEN__", token)


def build_app(supervisor: SupervisorView, guard: Guard, feed: Any, model: Any, name: str) -> Sanic:
    app = Sanic(name, configure_logging=False)
    app.config.MOTD = False
    app.config.ACCESS_LOG = False
    app.config.RESPONSE_TIMEOUT = 3600
    page = page_html(guard.token)

    def current(logs: int = LOG_LINES) -> dict[str, Any]:
        return snapshot.full(supervisor, model.latest, [line.as_dict() for line in feed.tail(logs)])

    @app.on_request
    async def only_our_host(request: Request) -> response.HTTPResponse | None:
        info = request.conn_info
        if info is not None and not guard.peer_allowed(info.client_ip, info.client_port,
                                                       info.server_port):
            return _error(403, "this dashboard serves only the user running llm-supervisord "
                               "(and root); use `llm-supervisorctl status` as that user")
        if not guard.host_allowed(request.headers.get("host")):
            return _error(421, "this dashboard answers only to its own address "
                               "(DNS-rebinding protection)")
        return None

    @app.on_response
    async def no_framing(request: Request, resp: response.BaseHTTPResponse) -> None:
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"

    @app.get("/")
    async def index(request: Request) -> response.HTTPResponse:
        return response.html(page)

    @app.get("/api/units")
    async def units(request: Request) -> response.HTTPResponse:
        return response.json(snapshot.units(supervisor))

    @app.get("/api/overview")
    async def overview(request: Request) -> response.HTTPResponse:
        logs = [line.as_dict() for line in feed.tail(LOG_LINES)]
        return response.json(snapshot.overview(supervisor, model.latest, logs))

    @app.post("/api/units/<name>/<action:start|stop|restart>")
    async def act(request: Request, name: str, action: str) -> response.HTTPResponse:
        if not guard.token_valid(request.headers.get(TOKEN_HEADER)):
            return _error(403, f"missing or wrong {TOKEN_HEADER}: reload the dashboard page")
        if not guard.origin_allowed(request.headers.get("origin")):
            return _error(403, "cross-origin request refused")
        try:
            if action == "start":
                done = supervisor.start_unit(name)
            elif action == "stop":
                done = await supervisor.stop_unit(name)
            else:
                await supervisor.restart_unit(name)
                done = [name]
        except KeyError:
            return _error(404, f"no such unit: {name}")
        except Exception as exc:  # a dependency cycle, say: shown on the page
            return _error(409, str(exc))
        return response.json({"ok": True, "action": action, "units": done})

    @app.get("/api/events")
    async def events(request: Request) -> None:
        stream = await request.respond(content_type="text/event-stream",
                                       headers={"Cache-Control": "no-store"})
        changes = supervisor.subscribe()
        logs = feed.subscribe()
        next_log = asyncio.ensure_future(logs.get())
        next_change = asyncio.ensure_future(changes.get())
        try:
            await stream.send(f"event: snapshot\ndata: {json.dumps(current())}\n\n")
            while True:
                done, _ = await asyncio.wait({next_log, next_change}, timeout=REFRESH_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if next_log in done:
                    line = next_log.result()
                    await stream.send(f"event: log\ndata: {json.dumps(line.as_dict())}\n\n")
                    next_log = asyncio.ensure_future(logs.get())
                if next_change in done or not done:
                    if next_change in done:
                        event = next_change.result()
                        await stream.send(f"event: {event.get('type', 'change')}\n"
                                          f"data: {json.dumps(event)}\n\n")
                        next_change = asyncio.ensure_future(changes.get())
                    await stream.send(f"event: snapshot\ndata: {json.dumps(current(0))}\n\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            next_log.cancel()
            next_change.cancel()
            supervisor.unsubscribe(changes)
            feed.unsubscribe(logs)

    return app
