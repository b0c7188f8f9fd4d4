"""Issue 9.5 end to end: a root daemon runs the shipped gateway and test-desktop units as the
unprivileged ``UNIT_USER`` (created by the daemon), the gateway keeps port < 1024 through its
ambient capability, and Chromium runs with its sandbox.

The daemon runs on Debian's ``/usr/bin/python3`` with this checkout and the venv's packages on
PYTHONPATH, from a state dir under a 0755 temp dir: this venv's interpreter (a pyenv under
/root, 0700) and pytest's 0700 temp dirs are out of an unprivileged user's reach, and with them
the daemon falls back to root (tested at the end).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.daemon_harness import free_low_port
from tests.gateway.supervisor_daemon import REPO_ROOT, Daemon, free_port, require_programs, wait_for
from tests.model_fixtures import build_tiny_model

SYSTEM_PYTHON = "/usr/bin/python3"
UNIT_USER = "llm-supervisor"
UNITS = ["model-service.service", "gateway.service", "xvfb.service", "x11vnc.service",
         "novnc.service", "browser.service", "stack.target"]
SERVICES = ("model-service", "gateway", "xvfb", "x11vnc", "novnc", "browser")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="a root daemon is what is tested")]


class SystemPythonDaemon(Daemon):
    """The shared harness daemon, started by /usr/bin/python3 instead of this venv's python."""

    def start(self, target: str | None = None, timeout: float = 60) -> SystemPythonDaemon:
        from tests import daemon_harness

        original = daemon_harness.sys.executable
        daemon_harness.sys.executable = SYSTEM_PYTHON  # the harness starts sys.executable
        try:
            super().start(target, timeout)
        finally:
            daemon_harness.sys.executable = original
        return self


def _low_port() -> int:
    return free_low_port(900)


@pytest.fixture(scope="module")
def root_dir() -> Iterator[Path]:
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs Debian's python3 (apt-get install python3)")
    root = Path(tempfile.mkdtemp(prefix="llm-unpriv-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(root_dir: Path) -> Iterator[tuple[Daemon, dict[str, int]]]:
    require_programs("caddy", "Xvfb", "x11vnc", "websockify", "chromium")
    ports = {name: free_port() for name in ("GATEWAY_ADMIN_PORT", "NOVNC_PORT", "VNC_PORT",
                                            "MODEL_SERVICE_PORT")}
    ports["GATEWAY_PORT"] = _low_port()
    venv_site = sysconfig.get_paths()["purelib"]
    # The default MODEL_PATH (STATE_DIR/models/default), made by root: the daemon hands it over.
    build_tiny_model(root_dir / "state" / "models" / "default")
    daemon = SystemPythonDaemon(root_dir, UNITS, {
        "GATEWAY_PROGRAM": "caddy", "BROWSER": "chromium",  # its sandbox is the point
        "PYTHONPATH": f"{REPO_ROOT / 'src'}:{venv_site}",
        "USE_INT8": "false", "DTYPE": "float32", "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", **{k: str(v) for k, v in ports.items()}})
    daemon.env.pop("UNIT_USER", None)
    try:
        daemon.start("stack.target")
        for unit in SERVICES:
            daemon.wait_ready(unit, 120)
        yield daemon, ports
    finally:
        daemon.stop()


def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def test_units_run_as_the_created_unprivileged_user(stack: tuple[Daemon, dict[str, int]]) -> None:
    daemon, _ = stack
    events = {e.get("event"): e for e in daemon.events()}
    assert "units_run_as_root" not in events, events["units_run_as_root"]
    assert "unit_user_ready" in events
    account = pwd.getpwnam(UNIT_USER)
    assert account.pw_shell == "/usr/sbin/nologin" and account.pw_uid < 1000  # a system user
    for unit in SERVICES:
        process = psutil.Process(daemon.unit(unit)["pid"])
        assert process.uids().effective == account.pw_uid, (unit, process.uids())
        assert process.uids().real == account.pw_uid, (unit, process.uids())
    state = daemon.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o711
    for owned in ("desktop", "gateway", "home"):
        assert (state / owned).stat().st_uid == account.pw_uid, owned
    assert (state / "desktop" / "vnc.passwd").stat().st_uid == account.pw_uid
    model = state / "models" / "default"
    assert all(p.stat().st_uid == account.pw_uid for p in [model, *model.iterdir()])


def test_gateway_binds_a_low_port_and_owns_its_admin_socket(
        stack: tuple[Daemon, dict[str, int]]) -> None:
    daemon, ports = stack
    process = psutil.Process(daemon.unit("gateway")["pid"])
    assert process.name() == "caddy"
    listening = {c.laddr.port for c in process.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {ports["GATEWAY_PORT"]} and ports["GATEWAY_PORT"] < 1024
    status = (Path(f"/proc/{process.pid}/status").read_text())
    ambient = int(status.split("CapAmb:")[1].split()[0], 16)
    assert ambient == 1 << 10  # CAP_NET_BIND_SERVICE, nothing else
    # Both unprivileged: the gateway in front of the model service.
    health = httpx.get(f"http://127.0.0.1:{ports['GATEWAY_PORT']}/api/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ready", health.text
    admin = daemon.state_dir / "gateway" / "admin" / "caddy.sock"
    assert admin.stat().st_uid == _uid(UNIT_USER)
    assert stat.S_IMODE(admin.parent.stat().st_mode) == 0o700
    transport = httpx.HTTPTransport(uds=str(admin))
    with httpx.Client(transport=transport, base_url="http://localhost", timeout=10) as client:
        assert client.get("/config/", headers={"Host": ""}).json()["admin"]["listen"] == \
            f"unix/{admin}"


def test_chromium_keeps_its_sandbox(stack: tuple[Daemon, dict[str, int]]) -> None:
    daemon, _ = stack
    browser = psutil.Process(daemon.unit("browser")["pid"])

    def tree_and_cmdlines() -> tuple[list[psutil.Process], list[str]]:
        processes = [browser, *browser.children(recursive=True)]
        return processes, [" ".join(p.cmdline()) for p in processes]

    # Chromium forks its zygote a moment after it starts (a loaded CI machine caught the tree
    # before that): wait for it, then check the whole tree.
    wait_for(lambda: any("--type=zygote" in c for c in tree_and_cmdlines()[1]), 30,
             "Chromium's zygote")
    tree, cmdlines = tree_and_cmdlines()
    assert not any("--no-sandbox" in c for c in cmdlines), cmdlines
    assert any("--type=zygote" in c for c in cmdlines), cmdlines
    assert all(p.uids().effective == _uid(UNIT_USER) for p in tree)
    # Sandboxed renderers live in their own user (or PID) namespace.
    renderers = [p for p in tree if "--type=renderer" in " ".join(p.cmdline())]
    wait_for(lambda: renderers or [p for p in browser.children(recursive=True)
                                   if "--type=renderer" in " ".join(p.cmdline())],
             30, "a renderer process")
    own_ns = os.readlink(f"/proc/{browser.pid}/ns/user")
    renderer = next(p for p in browser.children(recursive=True)
                    if "--type=renderer" in " ".join(p.cmdline()))
    assert os.readlink(f"/proc/{renderer.pid}/ns/user") != own_ns
    assert daemon.unit("browser")["restarts"] == 0


def test_a_root_daemon_falls_back_to_root_when_the_user_cannot_reach_python(
        tmp_path: Path) -> None:
    """This venv's interpreter is under /root (0700) here: units run as root, and say why."""
    blocked = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "test", "-x", os.path.realpath(sys.executable)]).returncode
    if blocked == 0:
        pytest.skip("this interpreter is reachable by other users: no fallback to see")
    daemon = Daemon(tmp_path, [], {})
    daemon.write_unit("who.service", "[Service]\nExecStart=sleep 1000\nUser=${UNIT_USER}\n")
    daemon.env.pop("UNIT_USER", None)
    daemon.start()
    try:
        daemon.ctl("start", "who", check=True)
        status = daemon.wait_state("who", "running")
        assert psutil.Process(status["pid"]).uids().effective == 0
        warning = next(e for e in daemon.events() if e.get("event") == "units_run_as_root")
        assert "out of its reach" in warning["reason"] and warning["silence"] == "UNIT_USER=root"
    finally:
        daemon.stop()


def test_an_explicit_unit_user_that_cannot_reach_python_stops_the_daemon(tmp_path: Path) -> None:
    """No silent fallback when the operator asked for a user: the daemon says what to fix."""
    blocked = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "test", "-x", os.path.realpath(sys.executable)]).returncode
    if blocked == 0:
        pytest.skip("this interpreter is reachable by other users")
    (tmp_path / "units").mkdir()
    env = {**os.environ, "UNIT_USER": "nobody", "LLM_SUPERVISOR_STATE_DIR": str(tmp_path / "s"),
           "LLM_SUPERVISOR_UNITS_DIR": str(tmp_path / "units"),
           "LLM_SUPERVISOR_CONFIG": "/dev/null"}
    result = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start",
                             "--foreground"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=REPO_ROOT)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "UNIT_USER=nobody" in output and "out of its reach" in output, output
    assert not (tmp_path / "s" / "supervisor.sock").exists()
