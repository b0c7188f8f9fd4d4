"""Small HTTP chores shared by the native and the OpenAI routes: the error type every handler
raises, request-body parsing and validation, and server-sent events."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

from pydantic import BaseModel, ValidationError
from sanic import Request

from llm_supervisor.model_server.api.schemas import describe
from llm_supervisor.model_server.errors import APIError  # noqa: F401  (re-exported for the routes)

STATUS_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
"""Error ``type`` for Sanic's own errors, by status."""


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


def read_json(request: Request) -> Any:
    if not request.body:
        raise APIError(400, "invalid_json", "the request body is empty; expected a JSON object")
    try:
        # UTF-8 only (RFC 8259): json.loads(bytes) would also guess UTF-16 and UTF-32.
        return json.loads(request.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "the request body nests too deeply") from None


def validate(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise APIError(422, "validation_error", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, "validation_error", describe(exc)) from None


def no_delay(request: Request) -> None:
    """Disable Nagle's algorithm on a streaming connection.

    Measured here: without it, each small SSE write after the first waited for the client's
    delayed ACK (~40 ms), so the first token arrived 40 ms late.
    """
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def sse(data: Any) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def open_event_stream(request: Request) -> Any:
    """Start a ``text/event-stream`` response (headers sent with the first ``send``)."""
    no_delay(request)
    return await request.respond(
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
