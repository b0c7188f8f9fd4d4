"""A small client for the control socket (used by the CLIs, tests and benchmarks).

HTTP/1.1 spoken by hand over an ``AF_UNIX`` socket: the CLI runs on every ``status`` call, and
``http.client`` alone (with the ``email`` package it parses headers with) was the largest part of
its start-up. The daemon is our own server, so the subset needed is small: a request line, a few
headers, and a body framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the
connection.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

from llm_supervisor.core.errors import SupervisorError

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any


class DaemonNotRunning(Exception):
    def __init__(self, socket_path: Path):
        super().__init__(f"llm-supervisord is not running (no answer on {socket_path}); "
                         "start it with `llm-supervisord start`")


class ControlError(SupervisorError):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class ConnectionDropped(OSError):
    """The daemon closed the connection before a whole response arrived."""


class Response:
    def __init__(self, status: int, body: bytes):
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Connection:
    """One HTTP/1.1 connection to the control socket; kept alive between requests."""

    def __init__(self, path: str, timeout: float | None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")
        self.reusable = True

    def send(self, method: str, url: str) -> None:
        extra = "Content-Length: 0\r\n" if method == "POST" else ""
        self.sock.sendall(f"{method} {url} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())

    def head(self) -> tuple[int, dict[str, str]]:
        """The status code and the headers (names lower-cased) of the next response."""
        line = self.reader.readline(65537)
        if not line:
            raise ConnectionDropped("the daemon closed the connection")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionDropped(f"not an HTTP response: {line[:80]!r}")
        headers: dict[str, str] = {}
        while (line := self.reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        return int(parts[1]), headers

    def body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return b"".join(self.chunks())
        if "content-length" in headers:
            size = int(headers["content-length"])
            data = self.reader.read(size)
            if len(data) != size:
                raise ConnectionDropped("the daemon closed the connection mid-response")
            return data
        self.reusable = False
        return self.reader.read()

    def chunks(self) -> Iterator[bytes]:
        while True:
            size_line = self.reader.readline(65537)
            if not size_line:
                raise ConnectionDropped("the daemon closed the connection mid-response")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            data = self.reader.read(size)
            self.reader.readline(65537)  # the CRLF after each chunk
            if len(data) != size:
                raise ConnectionDropped("the daemon closed the connection mid-response")
            yield data

    def stream(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The body as it arrives, piece by piece (chunks, or reads until the end)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            yield from self.chunks()
            return
        while data := self.reader.read1(65536):
            yield data

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0):
        self.socket = Path(socket_path)
        self.timeout = timeout
        self._conn: _Connection | None = None

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = quote(path, safe="/@:")
        return f"{url}?{urlencode(params)}" if params else url

    def _connect(self, timeout: float | None) -> _Connection:
        try:
            return _Connection(str(self.socket), timeout)
        except OSError as exc:
            raise DaemonNotRunning(self.socket) from exc

    def _exchange(self, method: str, url: str) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a kept-alive connection the daemon closed: retry once
            if self._conn is None:
                self._conn = self._connect(self.timeout)
            conn = self._conn
            try:
                conn.send(method, url)
                status, headers = conn.head()
                body = conn.body(headers)
            except (ConnectionDropped, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise DaemonNotRunning(self.socket) from None
                continue
            except OSError as exc:
                self.close()
                raise DaemonNotRunning(self.socket) from exc
            if not conn.reusable:
                self.close()
            return status, body
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, params: dict[str, Any] | None = None) -> Response:
        status, body = self._exchange(method, self._url(path, params))
        if status >= 400:
            try:
                message = json.loads(body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = body.decode(errors="replace")
            raise ControlError(status, message)
        return Response(status, body)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params).json()

    def post(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, params).json()

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """Lines of a streaming response (``logs -f``, ``/events``) until the daemon closes it."""
        connection = self._connect(None)
        try:
            try:
                connection.send("GET", self._url(path, params))
                status, headers = connection.head()
            except OSError as exc:
                raise DaemonNotRunning(self.socket) from exc
            if status >= 400:
                raise ControlError(status, connection.body(headers).decode(errors="replace"))
            pending = b""
            try:
                for data in connection.stream(headers):
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace")
            except ConnectionDropped:
                pass  # the daemon went away: the stream ends, as a closed connection does
            if pending:
                yield pending.decode("utf-8", errors="replace")
        finally:
            connection.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
