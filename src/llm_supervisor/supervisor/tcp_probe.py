"""``tcp://HOST:PORT`` health checks on a bare non-blocking socket.

A thousand units checked every two seconds are 500 connects a second. ``asyncio.open_connection``
builds a transport, a protocol and a stream reader and writer for each, only to close them
unread; here a check is one socket, one ``connect`` awaited on the event loop, one ``close``, and
only when the kernel's table of listening sockets (:mod:`.listening_sockets`, one dump shared by
every check) does not already show the port accepting.
Numeric addresses (the usual ``127.0.0.1``) skip the resolver thread; names are resolved as
``open_connection`` would, each address tried in turn.
"""

from __future__ import annotations

import asyncio
import functools
import socket

from llm_supervisor.supervisor import listening_sockets


def _numeric(host: str, port: int) -> list[tuple[int, tuple]] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, (host, port))]
    return None


async def _addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo() returned empty list for {host!r}")
    return [(family, address) for family, _, _, _, address in infos]


async def port_open(host: str, port: int) -> None:
    """Return once ``host:port`` accepts a connection; raise the ``OSError`` it gave otherwise
    (``ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)``, as
    ``open_connection`` words it)."""
    if not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, not {port}")
    addresses = await _addresses(host, port)
    if _in_table(addresses):
        return
    loop = asyncio.get_running_loop()
    errors: list[OSError] = []
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            return
        except OSError as exc:
            errors.append(exc)
        finally:
            sock.close()
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")


def _in_table(addresses: list[tuple[int, tuple]]) -> bool:
    """Whether the listening table shows one of ``addresses`` accepting."""
    table = listening_sockets.shared()
    for family, address in addresses:
        packed = listening_sockets.packed(family, address[0])
        if packed is not None and table.accepting(family, packed, address[1]):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _numeric_target(target: str) -> list[tuple[int, tuple]] | None:
    """The address of a check ``tcp://HOST:PORT`` whose host is numeric (parsed once)."""
    host, _, port = target.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        return None
    return _numeric(host.strip("[]"), int(port))


def accepting_now(target: str) -> bool:
    """Whether the check ``tcp://TARGET`` passes from the listening table alone (no connect, no
    await: the common case of a thousand healthy units costs a set lookup each)."""
    addresses = _numeric_target(target)
    return addresses is not None and _in_table(addresses)
