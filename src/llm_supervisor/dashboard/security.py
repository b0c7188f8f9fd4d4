"""Who may use the dashboard. It listens on loopback by default (``DASHBOARD_BIND_ADDRESS``),
but any web page the operator opens could send requests to 127.0.0.1, and loopback is shared by
every user of the machine — so

- every request must name this server in ``Host`` (a DNS-rebinding page sends its own name);
- a peer is served when it is a local socket of the daemon's own user, root, or the user who
  ran it through sudo (``SUDO_UID``): found in ``/proc/net/tcp[6]`` by the exact 4-tuple of the
  accepted connection (client address and port, server address and port) and only among live
  (ESTABLISHED) sockets, so neither a TIME_WAIT row (shown as uid 0) nor a socket bound to our
  port on another loopback address can stand in for the caller;
- when the operator opens the dashboard beyond loopback, any other peer must present HTTP basic
  credentials whose password lives in a 0600 file in the state dir, never in the page;
- actions (start/stop/restart) also need the per-daemon random token that only the page carries,
  in the ``X-Dashboard-Token`` header (a custom header: a cross-site page cannot send it without
  a CORS preflight, which we never answer), and an ``Origin``, when sent, that is this server.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import secrets
import stat
import sys
from pathlib import Path

TOKEN_HEADER = "X-Dashboard-Token"
BASIC_USER = "llm-supervisor"
PASSWORD_FILE = "dashboard.password"
_ESTABLISHED = "01"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback_bind(bind_address: str) -> bool:
    if bind_address == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_address).is_loopback
    except ValueError:
        return False


def ensure_password(state_dir: Path) -> Path:
    """The dashboard's basic-auth password file (``STATE_DIR/dashboard.password``, 0600, ours),
    made on first use; a file of the wrong owner or mode, or a link, is replaced."""
    path = state_dir / PASSWORD_FILE
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and \
                stat.S_IMODE(st.st_mode) == 0o600 and st.st_size >= 16:
            return path
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(24) + "\n")
    return path


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


def _address(text: str) -> Address:
    """An address as Python writes it, IPv4-mapped IPv6 made plain IPv4."""
    address = ipaddress.ip_address(text.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _proc_endpoint(field: str) -> tuple[Address, int]:
    """``0100007F:1F90`` (the kernel prints each 32-bit word of the address in host order)."""
    hex_address, hex_port = field.split(":")
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped if mapped is not None else address), int(hex_port, 16)


def tcp_peer_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the client end of a local TCP connection: the live socket whose local
    end is exactly ``client`` and remote end exactly ``server``; None when there is none here
    (a remote peer, or a client already gone)."""
    try:
        want_local = (_address(client[0]), client[1])
        want_remote = (_address(server[0]), server[1])
    except ValueError:
        return None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _ESTABLISHED or fields[9] == "0":
                continue  # TIME_WAIT and orphaned sockets belong to nobody
            try:
                if _proc_endpoint(fields[1]) == want_local and \
                        _proc_endpoint(fields[2]) == want_remote:
                    return int(fields[7])
            except ValueError:
                continue
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
    """``password``: the basic-auth password for peers that are not ours (None: loopback only,
    where every peer can be identified)."""

    def __init__(self, bind_address: str, port: int, token: str, password: str | None = None):
        names = {"127.0.0.1", "localhost", "::1"}
        if bind_address not in ("0.0.0.0", "::", ""):
            names.add(bind_address.lower())
        else:
            names |= _wildcard_names()
        self.names = names
        self.uids = allowed_uids()
        self.port = port
        self.token = token
        self.password = password

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

    def peer_is_ours(self, client: tuple[str, int], server: tuple[str, int]) -> bool:
        """The connection's client end is a live local socket of one of :attr:`uids`."""
        return tcp_peer_uid(client, server) in self.uids

    def credentials_valid(self, authorization: str | None) -> bool:
        """HTTP basic ``llm-supervisor:<password file's content>``."""
        if self.password is None or not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == BASIC_USER and hmac.compare_digest(given.encode(), self.password.encode())

    def token_valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())
