"""The dashboard's HTTP app (Sanic, in the daemon's process and event loop)::

    GET  /                  the page (HTML, the action token embedded)
    GET  /api/units         every unit, the same objects as ``status --json``
    GET  /api/overview      model, gateway routes, links, last log lines
    GET  /api/history       the charts' time series (``?since=T``: only newer points)
    GET  /api/timeline      the event timeline (``?after=ID``, ``?unit=NAME``)
    GET  /api/units/NAME/log   the unit's last lines with levels, access lines parsed
    GET  /static/FILE       the vendored charting library (uPlot), never a CDN
    GET  /api/events        server-sent events: ``snapshot`` (units + overview + the newest
                            chart points and timeline entries) on connect, on
                            every state/health change and every 2 s, one shared by all streams
                            (:mod:`.live`); ``log`` per output line; 503 past the stream cap
    POST /api/units/NAME/start|stop|restart   (X-Dashboard-Token required)

Every request must come from the daemon's user (or root) on this machine, or, when the dashboard
is opened beyond loopback, carry the basic-auth password (:mod:`.security`).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from sanic import Request, Sanic, response

from llm_supervisor.dashboard import log_lines, snapshot
from llm_supervisor.dashboard.history import History
from llm_supervisor.dashboard.live import LiveHub, TooManyStreams, sse
from llm_supervisor.dashboard.security import BASIC_USER, TOKEN_HEADER, Guard
from llm_supervisor.dashboard.timeline import Timeline
from llm_supervisor.plugins.view import SupervisorView

REFRESH_S = 2.0
LOG_LINES = 100
UNIT_LOG_MAX = 2000
TIMELINE_IN_SNAPSHOT = 50
STATIC = {"uPlot.iife.min.js": "text/javascript; charset=utf-8",
          "uPlot.min.css": "text/css; charset=utf-8",
          "uPlot.LICENSE": "text/plain; charset=utf-8"}


def _error(status: int, message: str) -> response.HTTPResponse:
    return response.json({"error": {"message": message}}, status=status)


def page_html(token: str) -> str:
    text = resources.files("llm_supervisor.dashboard").joinpath("index.html").read_text()
    return text.replace("__DASHBOARD_TOKEN__", token)


def _static_files() -> dict[str, bytes]:
    folder = resources.files("llm_supervisor.dashboard").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC}


def _number(request: Request, key: str, default: float | None) -> float | None:
    """A numeric query argument; ValueError (a 400) when it is not a number."""
    value = request.args.get(key)
    return default if value in (None, "") else float(value)


def _peer_is_ours(request: Request, guard: Guard) -> bool:
    """Looked up once per connection (the 4-tuple cannot change while it is open)."""
    info = request.conn_info
    if info is None or not isinstance(info.sockname, tuple) or info.peername is None:
        return False
    known = getattr(info.ctx, "peer_is_ours", None)
    if known is None:
        known = info.ctx.peer_is_ours = guard.peer_is_ours(
            (info.peername[0], info.peername[1]), (info.sockname[0], info.sockname[1]))
    return bool(known)


def build_app(supervisor: SupervisorView, guard: Guard, feed: Any, model: Any, name: str,
              max_streams: int = 16, history: History | None = None,
              timeline: Timeline | None = None) -> Sanic:
    app = Sanic(name, configure_logging=False)
    app.config.MOTD = False
    app.config.ACCESS_LOG = False
    app.config.RESPONSE_TIMEOUT = 3600
    # TouchUp rewrites Sanic's shared protocol class in place; a second app in the daemon (the
    # control API is the first) then fails at startup (KeyError 'send').
    app.config.TOUCHUP = False
    page = page_html(guard.token)
    static = _static_files()
    history = history or History(REFRESH_S, 3600)
    timeline = timeline or Timeline()

    def build() -> dict[str, Any]:
        return {**snapshot.full(supervisor, model.latest, []), "points": history.latest(),
                "interval": history.interval,
                "timeline": timeline.since(limit=TIMELINE_IN_SNAPSHOT)}

    live = LiveHub(supervisor, feed, build, interval=REFRESH_S, max_streams=max_streams)
    app.ctx.live = live

    @app.on_request
    async def only_our_host(request: Request) -> response.HTTPResponse | None:
        if not _peer_is_ours(request, guard) and \
                not guard.credentials_valid(request.headers.get("authorization")):
            if guard.password is None:
                return _error(403, "this dashboard serves only the user running "
                                   "llm-supervisord (and root); use `llm-supervisorctl status` "
                                   "as that user")
            refused = _error(401, f"log in as {BASIC_USER} with the password in the daemon's "
                                  "STATE_DIR/dashboard.password")
            refused.headers["WWW-Authenticate"] = 'Basic realm="llm-supervisord", charset="UTF-8"'
            return refused
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

    @app.get("/static/<file>")
    async def static_file(request: Request, file: str) -> response.HTTPResponse:
        if file not in static:
            return _error(404, f"no such file: {file}")
        return response.raw(static[file], content_type=STATIC[file])

    @app.get("/api/history")
    async def history_json(request: Request) -> response.HTTPResponse:
        try:
            since = _number(request, "since", None)
        except ValueError:
            return _error(400, "since must be a Unix time in seconds, e.g. since=1765000000.5")
        return response.json(history.as_json(since))

    @app.get("/api/timeline")
    async def timeline_json(request: Request) -> response.HTTPResponse:
        try:
            after = int(_number(request, "after", 0) or 0)
        except ValueError:
            return _error(400, "after must be the id of a timeline entry (an integer)")
        return response.json(timeline.since(after, request.args.get("unit") or None))

    @app.get("/api/units/<name>/log")
    async def unit_log(request: Request, name: str) -> response.HTTPResponse:
        try:
            tail = int(_number(request, "tail", 200) or 0)
        except ValueError:
            return _error(400, "tail must be a number of lines, e.g. tail=200")
        if not 0 <= tail <= UNIT_LOG_MAX:
            return _error(400, f"tail must be between 0 and {UNIT_LOG_MAX}")
        full = name if name.endswith(".service") else name + ".service"
        log = supervisor.unit_log(full)
        if log is None:
            return _error(404, f"no such unit: {name}")
        lines = await asyncio.to_thread(log.read_file_tail, tail)
        return response.json({"unit": name, "lines": [log_lines.describe(t) for t in lines]})

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
    async def events(request: Request) -> response.HTTPResponse | None:
        try:
            queue = live.subscribe()
        except TooManyStreams as exc:
            refused = _error(503, str(exc))
            refused.headers["Retry-After"] = "10"
            return refused
        try:
            stream = await request.respond(content_type="text/event-stream",
                                           headers={"Cache-Control": "no-store"})
            logs = [line.as_dict() for line in feed.tail(LOG_LINES)]
            await stream.send(sse("snapshot", {**live.snapshot(), "logs": logs}))
            while True:
                await stream.send(await queue.get())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            live.unsubscribe(queue)
        return None

    @app.before_server_stop
    async def stop_live(app: Sanic) -> None:
        await live.close()

    return app
