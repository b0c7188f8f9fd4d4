"""Where the gateway listens and where its files live, from the daemon's settings."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A Unix socket's path must fit sun_path: 108 bytes with the terminating NUL.
UNIX_PATH_MAX = 107
# Where an admin socket goes when the state dir's path is too long for one (a deep STATE_DIR,
# a test's temporary folder): fixed, not $TMPDIR, which may be as long.
SHORT_SOCKET_ROOT = Path("/tmp")


@dataclass(frozen=True)
class GatewayOptions:
    """Everything the renderers need besides the routes.

    ``try_duration``: how long the gateway keeps trying to reach an upstream that refuses
    connections or is marked unhealthy before it answers 502/503 (Caddy ``lb_try_duration``;
    Traefik's retry middleware is the closest equivalent, see docs/gateway.md).
    """

    state_dir: Path
    listen_host: str = "127.0.0.1"
    port: int = 8000
    admin_port: int = 8081
    health_interval_s: float = 2.0
    health_timeout_s: float = 2.0
    try_duration_s: float = 15.0
    try_interval_s: float = 0.25
    retry_attempts: int = 4
    passive_fail_duration_s: float = 5.0  # Caddy: a failed replica gets no traffic this long
    replica_health_interval_s: float = 1.0  # the active check of routes with replicas
    unhealthy_interval_s: float = 0.5  # Traefik: how often a server marked down is re-checked
    # The API-key check (gateway/auth_server.py) guarded routes ask first; None: no keys.
    auth_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> GatewayOptions:
        return cls(state_dir=Path(settings.state_dir), listen_host=settings.bind_address,
                   port=settings.gateway_port, admin_port=settings.gateway_admin_port)

    @property
    def directory(self) -> Path:
        return self.state_dir / "gateway"

    @property
    def caddy_config(self) -> Path:
        return self.directory / "caddy.json"

    @property
    def traefik_static(self) -> Path:
        return self.directory / "traefik" / "traefik.yml"

    @property
    def traefik_dynamic_dir(self) -> Path:
        return self.directory / "traefik" / "dynamic"

    @property
    def traefik_dynamic(self) -> Path:
        return self.traefik_dynamic_dir / "routes.yml"

    @property
    def admin_socket_dir(self) -> Path:
        """0700, owned by the gateway's user: only it (and root) can reach Caddy's admin API.

        ``STATE_DIR/gateway/admin``; where that path would make the socket's too long to bind
        (Caddy failed with ``bind: invalid argument``), ``/tmp/llm-supervisor-admin-HASH`` of
        the state dir instead (the launcher makes it and refuses one it does not own)."""
        preferred = self.directory / "admin"
        if len(os.fsencode(preferred / "caddy.sock")) <= UNIX_PATH_MAX:
            return preferred
        digest = hashlib.sha256(os.fsencode(self.state_dir)).hexdigest()[:16]
        return SHORT_SOCKET_ROOT / f"llm-supervisor-admin-{digest}"

    @property
    def admin_socket(self) -> Path:
        """Caddy's admin API: a Unix socket, never TCP (a TCP admin API on loopback lets any local
        user load a config, e.g. a file server rooted at ``/``)."""
        return self.admin_socket_dir / "caddy.sock"

    @property
    def admin_url(self) -> str:
        # Traefik's API/dashboard is always on loopback, whatever BIND_ADDRESS says.
        return f"http://127.0.0.1:{self.admin_port}"


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string (``2s``, ``250ms``), the format both gateways parse."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
