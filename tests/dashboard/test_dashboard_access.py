"""Who reaches the dashboard (issue 18, items 2 and 3), against a real daemon, real sockets and a
real second local user:

- item 2: another local user cannot pass as the daemon's user, neither through a root-owned
  TIME_WAIT row with its source port nor by binding the dashboard's own port on another
  loopback address (the peer is found by the accepted socket's exact 4-tuple);
- item 3: the dashboard has its own bind address (127.0.0.1 whatever BIND_ADDRESS says); opened
  beyond loopback it asks every peer that is not the daemon's user for a basic-auth password
  that lives in a 0600 file and never in the page, and says so at start.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from llm_supervisor.dashboard.security import tcp_peer_uid
from tests.daemon_harness import Daemon, free_port, wait_for
from tests.dashboard.dashboard_helpers import dashboard_daemon, wait_dashboard
from tests.local_user import LocalUser, another_user

# Run as the other user: connect from 127.0.0.K:SRC (K = 2..13) and print each HTTP status.
FROM_OTHER_LOOPBACKS = r"""
import socket, sys
port, src_port = int(sys.argv[1]), int(sys.argv[2])
codes = []
for last in range(2, 14):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.%d" % last, src_port))
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    codes.append(data.split(b" ")[1].decode())
print(" ".join(codes))
"""

FETCH = r"""
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    request.add_header("Authorization", sys.argv[2])
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


@pytest.fixture(scope="module")
def other_user() -> Iterator[LocalUser]:
    with another_user() as user:
        yield user


@pytest.fixture(scope="module")
def loopback_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    daemon, url = dashboard_daemon(tmp_path_factory.mktemp("dash"), port)
    daemon.start()
    try:
        wait_dashboard(url)
        yield daemon, port
    finally:
        daemon.stop()


def _host_address() -> str:
    """A non-loopback IPv4 address of this machine (a "remote" peer's way in), or skip."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    pytest.skip("this machine has no non-loopback IPv4 address")


def test_the_peer_is_found_by_the_exact_4_tuple() -> None:
    """Item 2: a live connection of ours is found; the same ports with another address are not."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        try:
            here = client.getsockname()
            assert tcp_peer_uid(here, ("127.0.0.1", port)) == os.geteuid()
            assert tcp_peer_uid(("127.0.0.2", here[1]), ("127.0.0.1", port)) is None
            assert tcp_peer_uid(here, ("127.0.0.2", port)) is None
            # the server's own end (same ports, reversed) is not the client's
            assert tcp_peer_uid(("127.0.0.1", port), here) == os.geteuid()  # it is ours too
        finally:
            accepted.close()
            client.close()


def test_another_user_binding_our_port_on_another_loopback_address_is_refused(
        loopback_dashboard: tuple[Daemon, int], other_user: LocalUser) -> None:
    """Item 2: a client on 127.0.0.K bound to the dashboard's own port matched the daemon's
    accepted socket (ports swapped, same numbers) when the peer was looked up by ports alone."""
    _, port = loopback_dashboard
    done = other_user.python(FROM_OTHER_LOOPBACKS, str(port), str(port))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["403"] * 12, done.stdout


def test_another_user_behind_a_root_time_wait_row_is_refused(
        loopback_dashboard: tuple[Daemon, int], other_user: LocalUser) -> None:
    """Item 2: root closes a connection first from source port C (a TIME_WAIT row, shown as
    uid 0, local port C, remote port ours); the other user then connects from port C on other
    loopback addresses. Ports alone made some of those answer uid 0."""
    _, port = loopback_dashboard
    src_port = free_port()
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", src_port))
        mine.connect(("127.0.0.1", port))
        mine.shutdown(socket.SHUT_WR)
        assert mine.recv(1) == b""  # the server closed its end too: ours goes to TIME_WAIT
    table = Path("/proc/net/tcp").read_text()
    assert f":{src_port:04X} 0100007F:{port:04X} 06 " in table, "no TIME_WAIT row to hide behind"
    done = other_user.python(FROM_OTHER_LOOPBACKS, str(port), str(src_port))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["403"] * 12, done.stdout


def test_bind_address_does_not_open_the_dashboard(tmp_path: Path) -> None:
    """Item 3: BIND_ADDRESS=0.0.0.0 opens the gateway and VNC, not the dashboard."""
    host = _host_address()
    port = free_port()
    daemon = Daemon(tmp_path, {"DASHBOARD_PORT": str(port), "BIND_ADDRESS": "0.0.0.0"})
    daemon.start()
    try:
        wait_dashboard(f"http://127.0.0.1:{port}")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{host}:{port}/", timeout=5)
        assert daemon.client.get("/dashboard")["auth"] is None
    finally:
        daemon.stop()


def test_opened_beyond_loopback_other_peers_need_the_password_file(
        tmp_path: Path, other_user: LocalUser) -> None:
    """Item 3: DASHBOARD_BIND_ADDRESS=0.0.0.0 — a peer that is not the daemon's user (here a
    second local user coming in over the host's address, as a remote peer would) gets 401 and no
    page without the basic-auth password; the password is in a 0600 file, not in the page; the
    daemon's log and ``GET /dashboard`` say where it is."""
    host = _host_address()
    port = free_port()
    daemon = Daemon(tmp_path, {"DASHBOARD_PORT": str(port), "DASHBOARD_BIND_ADDRESS": "0.0.0.0"})
    daemon.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    daemon.start()
    try:
        url = f"http://{host}:{port}/"
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, 30, "the dashboard")
        info = daemon.client.get("/dashboard")["auth"]
        password_file = Path(info["password_file"])
        assert password_file.parent == daemon.state_dir
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        good = "Basic " + base64.b64encode(f"llm-supervisor:{password}".encode()).decode()
        bad = "Basic " + base64.b64encode(b"llm-supervisor:guess").decode()

        assert other_user.python(FETCH, url).stdout.strip() == "401"
        assert other_user.python(FETCH, url, bad).stdout.strip() == "401"
        assert other_user.python(FETCH, url, good).stdout.strip() == "200"
        refused = httpx.get(url, timeout=5, headers={"Authorization": bad})
        page = httpx.get(url, timeout=5)  # the daemon's own user: identified, no password
        assert page.status_code == 200 and password not in page.text
        assert refused.status_code == 200  # ours even with a wrong header
        warned = [e for e in daemon.events() if e.get("event") == "dashboard_open_beyond_loopback"]
        assert warned, daemon.log_tail()
        assert warned[0]["password_file"] == str(password_file)
    finally:
        daemon.stop()
