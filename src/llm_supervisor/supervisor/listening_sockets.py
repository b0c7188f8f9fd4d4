"""Which TCP sockets listen on this machine, from one kernel query shared by every check.

A thousand units with ``tcp://`` checks every two seconds are 500 connects a second: each a
socket, a handshake, an event-loop registration and a close, in the daemon, for an answer the
kernel already has. One ``sock_diag`` netlink dump (what ``ss -ltn`` asks; the kernel filters to
listening sockets, so it stays small however many connections the machine holds) lists every
listening socket with its accept queue: a port passes when a socket listens on its address (or
on the wildcard) and its accept queue is not full (a program that stopped accepting fills it, as
a connect would then time out). The dump is kept ``TTL_S``, so a port closed within the last
quarter second can pass one more check (the unit's exit is seen at once anyway, through its
process). A port the dump does not show passing is connected to for real
(:func:`~.tcp_probe.port_open`), so a failed check is always a failed connect and says why.
Linux only; elsewhere, or where netlink is refused, every check connects.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
TTL_S = 0.25
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
# inet_diag_msg: family, state, timer, retrans; inet_diag_sockid (sport, dport big-endian,
# src[16], dst[16], interface, cookie[2]); expires, rqueue, wqueue, uid, inode.
_PORT = struct.Struct(">H")
_QUEUES = struct.Struct("=II")
_WILDCARD: dict[int, bytes] = {socket.AF_INET: bytes(4), socket.AF_INET6: bytes(16)}

Listener = tuple[int, bytes, int]  # family, packed address, port


def _request(family: int) -> bytes:
    # inet_diag_req_v2: family, protocol, extensions, pad, states bitmask, then an empty sockid.
    body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN) + bytes(48)
    return _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY,
                        NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body


def dump_listeners(family: int) -> set[Listener]:
    """Listening sockets of ``family`` whose accept queue has room; raises OSError."""
    found: set[Listener] = set()
    size = 4 if family == socket.AF_INET else 16
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(1.0)
        sock.sendto(_request(family), (0, 0))
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind = _HEADER.unpack_from(data, offset)[:2]
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR or length < _HEADER.size:
                    raise OSError("sock_diag refused the dump")
                body = offset + _HEADER.size
                (port,) = _PORT.unpack_from(data, body + 4)
                address = data[body + 8:body + 8 + size]
                queued, backlog = _QUEUES.unpack_from(data, body + 56)
                if queued < max(backlog, 1):
                    found.add((family, address, port))
                offset += (length + 3) & ~3
            if not data:
                return found


class ListeningSockets:
    def __init__(self, ttl_s: float = TTL_S):
        self.ttl_s = ttl_s
        self._at = float("-inf")
        self._listeners: set[Listener] = set()
        self.usable = True

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._at < self.ttl_s:
            return
        listeners: set[Listener] = set()
        try:
            for family in (socket.AF_INET, socket.AF_INET6):
                listeners |= dump_listeners(family)
        except (OSError, AttributeError, struct.error):  # not Linux, netlink refused
            self.usable = False
            return
        self._listeners, self._at = listeners, now

    def accepting(self, family: int, address: bytes, port: int) -> bool:
        """Whether a socket listens for ``address:port`` with room in its accept queue (False
        also when it cannot be told: the caller then connects)."""
        if not self.usable:
            return False
        self._refresh()
        # (A wildcard IPv6 socket may take IPv4 connections too, unless IPV6_V6ONLY, which the
        # dump does not say: such a check connects.)
        return (family, address, port) in self._listeners or \
            (family, _WILDCARD[family], port) in self._listeners


_shared: ListeningSockets | None = None


def shared() -> ListeningSockets:
    global _shared
    if _shared is None:
        _shared = ListeningSockets()
    return _shared


def packed(family: int, host: str) -> bytes | None:
    with contextlib.suppress(OSError):
        return socket.inet_pton(family, host)
    return None
