"""A small client for the control socket (used by the CLIs, tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


class DaemonNotRunning(Exception):
    def __init__(self, socket: Path):
        super().__init__(f"llm-supervisord is not running (no answer on {socket}); "
                         "start it with `llm-supervisord start`")


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class ControlClient:
    def __init__(self, socket: Path, timeout: float = 30.0):
        self.socket = socket
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)),
                                  base_url="http://localhost", timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.TransportError, FileNotFoundError) as exc:
            raise DaemonNotRunning(self.socket) from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise ControlError(response.status_code, message)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ControlError(response.status_code, response.text)
                yield from response.iter_lines()
        except (httpx.TransportError, FileNotFoundError) as exc:
            raise DaemonNotRunning(self.socket) from exc

    def close(self) -> None:
        self._http.close()
