"""Who may use the dashboard: it listens on loopback, but any web page the operator opens could
send requests to 127.0.0.1 — so

- every request must name this server in ``Host`` (a DNS-rebinding page sends its own name);
- actions (start/stop/restart) need the per-daemon random token, which only the dashboard page
  itself carries, in the ``X-Dashboard-Token`` header (a custom header: a cross-site page cannot
  send it without a CORS preflight, which we never answer), and an ``Origin``, when sent, that
  is this server.
"""

from __future__ import annotations

import hmac
import secrets

TOKEN_HEADER = "X-Dashboard-Token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _host_name(host: str) -> str | None:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, bind_address: str, port: int, token: str):
        names = {"127.0.0.1", "localhost", "::1"}
        if bind_address not in ("0.0.0.0", "::", ""):
            names.add(bind_address.lower())
        self.names = names
        self.port = port
        self.token = token

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        name = _host_name(host)
        if name is None or name.rstrip(".") not in self.names:
            return False
        port = host.rsplit(":", 1)[-1] if host.rstrip().endswith(tuple("0123456789")) and \
            ":" in host.split("]")[-1] else None
        return port is None or port == str(self.port)

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        scheme, _, rest = origin.partition("://")
        return scheme == "http" and self.host_allowed(rest)

    def token_valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())
