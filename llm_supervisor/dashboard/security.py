"""Who may use the dashboard: it listens on loopback, but any web page the operator opens could
send requests to 127.0.0.1 — so

- every request must name this server in ``Host`` (a DNS-rebinding page sends its own name);
- actions (start/stop/restart) need the per-daemon random token, which only the dashboard page
  itself carries, in the ``X-Dashboard-Token`` header (a custom header: a cross-site page cannot
  send it without a CORS preflight, which we never answer), and an ``Origin``, when sent, that
  is this server;
- loopback is shared by every user of the machine, and the control socket is 0600: a local
  connection is served only when it comes from the daemon's own user, root, or the user who ran
  it through sudo (``SUDO_UID``) — found in ``/proc/net/tcp``, like identd. Remote peers exist
  only when BIND_ADDRESS was opened on purpose.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

TOKEN_HEADER = "X-Dashboard-Token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _host_name(host: str) -> str | None:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_uids() -> set[int]:
    uids = {0, os.geteuid()}
    sudo_uid = os.environ.get("SUDO_UID", "")
    if sudo_uid.isdigit():
        uids.add(int(sudo_uid))
    return uids


def tcp_peer_uid(client_port: int, server_port: int) -> int | None:
    """The uid owning the client end of a local TCP connection (``/proc/net/tcp[6]``: the
    socket whose local port is the client's and remote port ours), or None if not found."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == client_port and remote_port == server_port:
                return int(fields[7])
    return None


def _wildcard_names() -> set[str]:
    """This machine's names and addresses, for a dashboard bound to every interface."""
    import socket

    import psutil

    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                names.add(address.address.split("%")[0].lower())
    return names


class Guard:
    def __init__(self, bind_address: str, port: int, token: str):
        names = {"127.0.0.1", "localhost", "::1"}
        if bind_address not in ("0.0.0.0", "::", ""):
            names.add(bind_address.lower())
        else:
            names |= _wildcard_names()
        self.names = names
        self.uids = allowed_uids()
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

    def peer_allowed(self, client_ip: str, client_port: int, server_port: int) -> bool:
        """A loopback peer must be one of :attr:`uids`; a remote one (BIND_ADDRESS opened on
        purpose) cannot be identified and is let through to the Host and token checks."""
        try:
            address = ipaddress.ip_address(client_ip.split("%")[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
            return True
        return tcp_peer_uid(client_port, server_port) in self.uids

    def token_valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())
