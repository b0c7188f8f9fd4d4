"""The model router: one endpoint, many models, chosen by the request's ``model`` field.

The gateway sends ``/v1`` and ``/api/generate`` here (127.0.0.1 only). For a POST to
``/v1/chat/completions``, ``/v1/completions`` or ``/api/generate`` the router reads the JSON
body's ``model`` (none = the default model), asks the :class:`Activator` for a lease (which loads
the model when needed, bounded), and then relays bytes both ways unchanged: streaming (SSE,
chunked) passes through as the model server writes it. ``GET /v1/models`` is answered here from
the catalog, with every model's state. Everything else under ``/v1`` goes to the default model.

Deliberately small: plain asyncio streams, one upstream connection per request
(``Connection: close`` on both sides, so a response ends when the upstream closes and nothing
has to be re-framed). Bad requests get a JSON 4xx; an activation that cannot finish in time gets
503 with ``Retry-After`` and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog

from llm_supervisor.supervisor.activation import ActivationError, Activator

log = structlog.get_logger("llm_supervisor.models.router")

MODEL_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/api/generate"})
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1_000_000
CHUNK = 64 * 1024
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade"}
_REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 503: "Service Unavailable"}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str, kind: str, retry_after: float | None = None
                   ) -> bytes:
    """An OpenAI-style error body (``{"error": {"message", "type", "code"}}``)."""
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    extra = f"Retry-After: {max(1, round(retry_after))}\r\n" if retry_after else ""
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode() + body


def json_response(value: Any) -> bytes:
    body = json.dumps(value).encode()
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """Request line and headers; raises :class:`_BadRequest`."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        headers.append((name.lower(), value.strip()))
    return parts[0], parts[1], headers


def model_of(body: bytes) -> str | None:
    """The request's ``model`` (None when absent, empty or the body is not a JSON object: the
    default model then answers, and its own validation says what is wrong)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


class ModelRouter:
    def __init__(self, activator: Activator, host: str, port: int):
        self.activator = activator
        self.host, self.port = host, port
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port,
                                                 limit=MAX_HEAD_BYTES)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # never let one request take the router down
            log.exception("router_error", error=str(exc))
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, headers = parse_head(head)
            body = await self._read_body(reader, headers)
        except asyncio.LimitOverrunError:
            writer.write(error_response(431, "request head larger than 64 KiB", "invalid_request"))
            return
        except _BadRequest as exc:
            writer.write(error_response(exc.status, str(exc), "invalid_request"))
            return
        path = target.split(b"?", 1)[0].decode("latin-1")
        if path == "/v1/models" and method in (b"GET", b"HEAD"):
            writer.write(json_response(self.models_list()))
            return
        model = model_of(body) if method == b"POST" and path in MODEL_PATHS else None
        try:
            lease = await self.activator.acquire(model)
        except ActivationError as exc:
            writer.write(error_response(exc.status, str(exc), exc.kind, exc.retry_after))
            return
        try:
            await self._relay(lease.upstream, method, target, headers, body, writer)
        finally:
            lease.release()

    async def _read_body(self, reader: asyncio.StreamReader,
                         headers: list[tuple[bytes, bytes]]) -> bytes:
        values = dict(headers)
        if b"chunked" in values.get(b"transfer-encoding", b"").lower():
            raise _BadRequest(411, "chunked request bodies are not supported: send "
                                   "Content-Length")
        try:
            length = int(values.get(b"content-length", b"0"))
        except ValueError:
            raise _BadRequest(400, "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BadRequest(413, f"request body over {MAX_BODY_BYTES} bytes")
        return await reader.readexactly(length) if length else b""

    async def _relay(self, upstream: str, method: bytes, target: bytes,
                     headers: list[tuple[bytes, bytes]], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            writer.write(error_response(502, f"the model server at {upstream} does not answer "
                                        f"({exc.strerror or exc}); it is being restarted",
                                        "upstream_unavailable", 2))
            return
        try:
            kept = b"".join(name + b": " + value + b"\r\n" for name, value in headers
                            if name not in _HOP_BY_HOP)
            up_writer.write(method + b" " + target + b" HTTP/1.1\r\n" + kept +
                            b"Connection: close\r\n\r\n" + body)
            while data := await up_reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        finally:
            up_writer.close()

    def models_list(self) -> dict[str, Any]:
        now = int(time.time())
        return {"object": "list",
                "data": [{"object": "model", "created": now, "owned_by": "llm-supervisor", **view}
                         for view in self.activator.views()]}
