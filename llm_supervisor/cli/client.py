"""A small client for the control socket (used by the CLIs, tests and benchmarks).

Plain ``http.client`` over ``AF_UNIX``: the CLI runs on every ``status`` call, and this keeps its
start-up to the standard library.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from llm_supervisor.core.errors import SupervisorError


class DaemonNotRunning(Exception):
    def __init__(self, socket_path: Path):
        super().__init__(f"llm-supervisord is not running (no answer on {socket_path}); "
                         "start it with `llm-supervisord start`")


class ControlError(SupervisorError):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Response:
    def __init__(self, status: int, body: bytes):
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0):
        self.socket = Path(socket_path)
        self.timeout = timeout
        self._conn: _UnixConnection | None = None

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = quote(path, safe="/@:")
        return f"{url}?{urlencode(params)}" if params else url

    def _send(self, method: str, url: str, timeout: float | None) -> http.client.HTTPResponse:
        for attempt in (1, 2):  # a kept-alive connection the daemon closed: retry once
            if self._conn is None:
                self._conn = _UnixConnection(str(self.socket), timeout)
            try:
                self._conn.request(method, url, headers={"Content-Length": "0"} if method == "POST"
                                   else {})
                return self._conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise DaemonNotRunning(self.socket) from None
            except OSError as exc:
                self.close()
                raise DaemonNotRunning(self.socket) from exc
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, params: dict[str, Any] | None = None) -> Response:
        response = self._send(method, self._url(path, params), self.timeout)
        body = response.read()
        if response.status >= 400:
            try:
                message = json.loads(body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = body.decode(errors="replace")
            raise ControlError(response.status, message)
        return Response(response.status, body)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params).json()

    def post(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, params).json()

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """Lines of a streaming response (``logs -f``, ``/events``) until the daemon closes it."""
        connection = _UnixConnection(str(self.socket), None)
        try:
            connection.request("GET", self._url(path, params))
            response = connection.getresponse()
        except OSError as exc:
            raise DaemonNotRunning(self.socket) from exc
        if response.status >= 400:
            raise ControlError(response.status, response.read().decode(errors="replace"))
        try:
            while line := response.readline():
                yield line.decode("utf-8", errors="replace").rstrip("\n")
        finally:
            connection.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
