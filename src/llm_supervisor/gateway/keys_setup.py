"""At daemon start: decide whether the gateway checks API keys, create the keys file when it is
ours to create, and start the check (:mod:`..gateway.auth_server`)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from llm_supervisor.gateway.api_keys import KeyRing, ensure_keys_file, keys_file, problems
from llm_supervisor.gateway.auth_server import AuthServer

log = structlog.get_logger("llm_supervisor.gateway")


def start_api_key_check(settings: Any) -> AuthServer | None:
    """The running check, or None when the gateway stays open (loopback, no API_KEYS_FILE).
    Must be called in the daemon's event loop."""
    path = keys_file(settings)
    if path is None:
        return None
    if ensure_keys_file(path):
        log.warning("api_keys_generated", path=str(path),
                    hint=f"the gateway on {settings.bind_address} requires 'Authorization: Bearer "
                         f"KEY' on /api and /v1; the key is in {path} (sudo cat it); add or "
                         "remove keys there, one per line, no restart needed")
    for problem in problems(path):
        log.warning("api_keys_problem", path=str(path), problem=problem)
    server = AuthServer(KeyRing(path)).bind()
    asyncio.get_running_loop().create_task(server.start(), name="gateway-api-keys")
    log.info("api_keys_enforced", path=str(path), check=server.url,
             prefixes="/api /v1")
    return server
