"""Connecting to the Docker engine and turning SDK exceptions into messages that say what to do."""

from __future__ import annotations

import os
import re
from typing import Any

from llm_supervisor.runtimes.base import RuntimeError_

DEFAULT_SOCKET = "/var/run/docker.sock"
START_HINT = ("start it with `sudo systemctl start docker` (or, as root without systemd, "
              "`dockerd >/var/log/dockerd.log 2>&1 &`)")


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def _socket_path() -> str | None:
    address = engine_address()
    return address.removeprefix("unix://") if address.startswith("unix://") else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _permission_denied(exc: BaseException) -> bool:
    return any(isinstance(e, PermissionError) for e in _chain(exc)) or \
        "Permission denied" in str(exc)


def connection_error(exc: BaseException) -> RuntimeError_:
    """Why the engine cannot be used: not running, or the socket is not ours to open."""
    path = _socket_path()
    if _permission_denied(exc):
        return RuntimeError_(
            f"permission denied on the Docker socket {path or engine_address()}: add your user "
            "to the docker group (`sudo usermod -aG docker $USER`, then log in again) or run "
            "llm-supervisord as root")
    where = path or engine_address()
    return RuntimeError_(f"Docker engine not reachable at {where}; {START_HINT}")


def connect(timeout: float = 60.0, max_pool_size: int = 32) -> Any:
    """A docker SDK client that has answered a ping, or :class:`RuntimeError_`."""
    import docker
    from docker.errors import DockerException

    path = _socket_path()
    if path is not None and not os.path.exists(path):
        raise RuntimeError_(f"Docker engine not reachable: {path} does not exist; {START_HINT}")
    try:
        # from_env also honours DOCKER_TLS_VERIFY / DOCKER_CERT_PATH for remote engines.
        client = docker.from_env(timeout=timeout, max_pool_size=max_pool_size, version="auto")
        client.ping()
    except (DockerException, OSError) as exc:
        raise connection_error(exc) from exc
    return client


def api_message(exc: BaseException) -> str:
    """The engine's own explanation, without the SDK's URL noise."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation.decode() if isinstance(explanation, bytes) else explanation)
    return str(exc)


_PORT_IN_USE = re.compile(r"(port is already allocated|address already in use)", re.I)
_HOST_PORT = re.compile(r"(?:0\.0\.0\.0|[\d.]+|\[[0-9a-f:]*\]):(\d+)")


def start_error(exc: BaseException, ports_text: str) -> RuntimeError_:
    """Explain a failed ``container.start()``; port conflicts are the common case."""
    message = api_message(exc)
    if _PORT_IN_USE.search(message):
        match = _HOST_PORT.search(message)
        port = match.group(1) if match else "?"
        return RuntimeError_(
            f"port {port} is already in use on the host (Ports={ports_text}); stop whatever "
            f"listens there (`ss -ltnp 'sport = :{port}'`) or change the port in the unit/config")
    if _permission_denied(exc):
        return connection_error(exc)
    return RuntimeError_(f"container did not start: {message}")
