"""The API-key check both gateways ask before proxying ``/api`` and ``/v1``.

A small HTTP/1.1 endpoint (h11 on asyncio streams) on 127.0.0.1, an ephemeral port, run inside
the daemon by the gateway plugin. Traefik's ``forwardAuth`` middleware and Caddy's
``forward_auth`` (a ``reverse_proxy`` with ``handle_response``) send it the client's headers:
200 lets the request through, anything else is returned to the client as it is, here a 401 with
a JSON reason (the model server's error shape) and ``WWW-Authenticate: Bearer``.

Why a check we run rather than keys in the gateway's own config: Traefik has no bearer-token
middleware (``basicAuth`` only), keys written into routing files would be readable wherever the
config is, and a change of keys would be a config reload; here the file is re-read when it
changes (:class:`..api_keys.KeyRing`) and both gateways share one implementation.
"""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import suppress

import h11
import structlog

from llm_supervisor.gateway.api_keys import KeyRing

log = structlog.get_logger("llm_supervisor.gateway")

MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 60.0
UNAUTHORIZED = json.dumps({"error": {
    "code": 401, "type": "unauthorized",
    "message": "this gateway requires an API key: send 'Authorization: Bearer KEY' with a key "
               "from API_KEYS_FILE (ask the operator)"}}).encode()


class AuthServer:
    """``start()`` binds 127.0.0.1:0; :attr:`url` is what the gateway config points at."""

    def __init__(self, ring: KeyRing, host: str = "127.0.0.1", port: int = 0):
        self.ring = ring
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self.allowed = 0
        self.refused = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/auth"

    def bind(self) -> AuthServer:
        """Bind now (synchronously), so the port is known before the gateway config is written;
        :meth:`start` serves on it."""
        self._sock = socket.create_server((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        return self

    async def start(self) -> AuthServer:
        if self._sock is None:
            self.bind()
        self._server = await asyncio.start_server(self._serve, sock=self._sock,
                                                  limit=MAX_HEAD_BYTES)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None

    def _decide(self, request: h11.Request) -> h11.Response | tuple[h11.Response, bytes]:
        authorization = None
        for name, value in request.headers:
            if name == b"authorization":
                authorization = value.decode("latin-1")
        if self.ring.allows(authorization):
            self.allowed += 1
            return h11.Response(status_code=200, headers=[("Content-Length", "0")])
        self.refused += 1
        return (h11.Response(status_code=401, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(UNAUTHORIZED))),
            ("WWW-Authenticate", 'Bearer realm="llm-supervisord"'), ("Cache-Control", "no-store"),
        ]), UNAUTHORIZED)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    decision = self._decide(event)
                    response, body = decision if isinstance(decision, tuple) else (decision, b"")
                    # Whatever body came with the request is read and dropped below.
                    writer.write(conn.send(response) + conn.send(h11.Data(data=body))
                                 if body else conn.send(response))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    continue
                if isinstance(event, h11.Data):
                    continue
                if isinstance(event, h11.EndOfMessage):
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                    continue
                break  # ConnectionClosed, or PAUSED on a protocol switch we never allow
        except (h11.RemoteProtocolError, TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()
