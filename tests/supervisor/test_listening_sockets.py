"""The kernel's table of listening sockets (sock_diag), which ``tcp://`` checks consult before
connecting: real sockets on loopback, real netlink dumps, compared with what a connect sees."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from llm_supervisor.supervisor import listening_sockets
from llm_supervisor.supervisor.listening_sockets import ListeningSockets, dump_listeners
from llm_supervisor.supervisor.tcp_probe import port_open

LOOPBACK = socket.inet_pton(socket.AF_INET, "127.0.0.1")


def _listener(host: str = "127.0.0.1", backlog: int = 16) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(backlog)
    return sock, sock.getsockname()[1]


def test_the_dump_lists_what_listens_and_not_what_is_closed_or_only_bound() -> None:
    listening, port = _listener()
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
    try:
        found = dump_listeners(socket.AF_INET)
        assert (socket.AF_INET, LOOPBACK, port) in found
        assert (socket.AF_INET, LOOPBACK, bound.getsockname()[1]) not in found
        table = ListeningSockets(ttl_s=0)
        assert table.accepting(socket.AF_INET, LOOPBACK, port)
        assert not table.accepting(socket.AF_INET, LOOPBACK, bound.getsockname()[1])
        listening.close()
        assert not table.accepting(socket.AF_INET, LOOPBACK, port)
    finally:
        listening.close()
        bound.close()


def test_a_wildcard_listener_serves_loopback_and_ipv6_is_read_too() -> None:
    wildcard, port = _listener("0.0.0.0")
    table = ListeningSockets(ttl_s=0)
    try:
        assert table.accepting(socket.AF_INET, LOOPBACK, port)
    finally:
        wildcard.close()
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        six, port6 = _listener("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        assert table.accepting(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "::1"), port6)
    finally:
        six.close()


def test_a_full_accept_queue_does_not_pass() -> None:
    """A program that stopped accepting: its queue fills, and a connect would then hang; the
    table says so too, and the check falls back to a real connect (which times out here)."""
    listening, port = _listener(backlog=1)
    clients = []
    try:
        table = ListeningSockets(ttl_s=0)
        assert table.accepting(socket.AF_INET, LOOPBACK, port)
        deadline = time.monotonic() + 5
        while table.accepting(socket.AF_INET, LOOPBACK, port):
            assert time.monotonic() < deadline, "the queue never filled"
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            clients.append(client)
            time.sleep(0.05)
        assert len(clients) >= 1
    finally:
        for client in clients:
            client.close()
        listening.close()


def test_checks_pass_from_the_table_without_a_connection() -> None:
    """The point of it: a passing check opens no connection (the server never sees one)."""
    listening, port = _listener()
    listening.setblocking(False)
    try:
        # The shared table may be up to TTL_S old (another test refreshed it): a port that began
        # listening since is connected to until the next refresh.
        time.sleep(listening_sockets.TTL_S)
        for _ in range(8):  # fewer than the accept queue holds, should any connect
            asyncio.run(port_open("127.0.0.1", port))
        with pytest.raises(BlockingIOError):
            listening.accept()  # nothing connected
    finally:
        listening.close()


def test_without_netlink_every_check_connects() -> None:
    listening, port = _listener()
    listening.setblocking(False)
    shared = listening_sockets.shared()
    try:
        shared.usable = False
        asyncio.run(port_open("127.0.0.1", port))
        time.sleep(0.05)
        connection, _ = listening.accept()  # this time the check connected
        connection.close()
    finally:
        shared.usable = True
        listening.close()
