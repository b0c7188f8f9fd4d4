"""The Sanic application: assembles the model server from its parts.

- :mod:`.lifecycle`    the model's life: source, background loading with progress, engine, health;
- :mod:`.generation`   the adapter between routes and engine (prompts, admission, text deltas);
- :mod:`.native_api`   ``/``, ``/api/health``, ``/metrics``, ``/api/generate``;
- :mod:`.openai_api`   the OpenAI-compatible Blueprint under ``/v1``.

Here: Sanic's configuration, the request guard (Host allow-list, POST rule), request metrics,
one error format for every failure, and the start/stop hooks. The server answers HTTP from the
first second; the model loads in a background thread.
"""

from __future__ import annotations

import asyncio
import os
import signal

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from llm_supervisor.model_server.api.guard import Refusal, RequestGuard
from llm_supervisor.model_server.api.http import STATUS_TYPES, APIError, error_body
from llm_supervisor.model_server.api.native import native_api
from llm_supervisor.model_server.api.openai import openai_api
from llm_supervisor.model_server.lifecycle import MODEL_SOURCE_FAILED, ServerState
from llm_supervisor.model_server.settings import ModelServerSettings

__all__ = ["MODEL_SOURCE_FAILED", "APIError", "ServerState", "create_app"]


def create_app(settings: ModelServerSettings) -> Sanic:
    """Build the Sanic app. Loading starts once the server listens."""
    app = Sanic("llm_model_server", configure_logging=False)
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    app.config.RESPONSE_TIMEOUT = 3600
    app.config.REQUEST_TIMEOUT = 60
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 2.0
    app.config.KEEP_ALIVE_TIMEOUT = 30
    app.config.NOISY_EXCEPTIONS = False
    # With uvloop, a SIGTERM arriving while the loader thread runs was lost (seen with uvloop
    # 0.23); the standard asyncio loop handles it, and the loop is not our bottleneck.
    app.config.USE_UVLOOP = False
    state = ServerState(settings)
    app.ctx.state = state
    guard = RequestGuard(settings)
    app.blueprint(native_api)
    app.blueprint(openai_api)

    @app.after_server_start
    async def _start_loading(app: Sanic) -> None:
        state.log.info(
            "listening",
            host=settings.host,
            port=settings.port,
            pid=os.getpid(),
            model_path=str(settings.model_path),
            engine=settings.engine,
            use_int8=settings.use_int8,
        )
        state.start_loading(asyncio.get_running_loop())
        # A rolling restart drains this server before stopping it (supervisor/rolling.py).
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, state.start_draining)

    @app.before_server_stop
    async def _drain(app: Sanic) -> None:
        state.stopping = True
        state.log.info(
            "shutting_down",
            inflight=state.engine.inflight if state.engine else 0,
            grace_s=settings.shutdown_timeout,
        )
        if state.engine is not None:
            await state.engine.shutdown(settings.shutdown_timeout)

    @app.on_request
    async def _guard(request: Request) -> None:
        """Host allow-list on every route; the browser rule on the POST (JSON) routes."""
        host = request.headers.get("host")
        try:
            guard.check_host(host)
            if request.method == "POST":
                guard.check_post(request.headers.get("content-type"), request.headers.get("origin"), host)
        except Refusal as exc:
            raise APIError(exc.status, exc.error_type, str(exc)) from None

    @app.on_response
    async def _count(request: Request, response: HTTPResponse) -> None:
        route = request.route.path if request.route else "unmatched"
        state.metrics.requests.labels(route="/" + route.lstrip("/"), status=str(response.status)).inc()

    @app.exception(Exception)
    async def _error(request: Request, exc: Exception) -> HTTPResponse:
        if isinstance(exc, APIError):
            status, etype = exc.status_code, exc.error_type
        elif isinstance(exc, SanicException):
            status = exc.status_code
            etype = STATUS_TYPES.get(status, "http_error")
        else:
            state.log.exception("unhandled_error", path=request.path)
            status, etype = 500, "internal_error"
        if status >= 500:
            state.metrics.failures.labels(err=etype).inc()
        headers = dict(getattr(exc, "headers", None) or {})
        return json_response(error_body(etype, str(exc) or etype), status=status, headers=headers)

    return app
