"""``[Service] User=/Group=/AmbientCapabilities=``: a root daemon runs process units as another
user (issue 9.5). Real daemon, real processes, real uids (psutil), real port binding.

The units run ``/usr/bin/python3``: this venv's interpreter may live under /root (0700), which
``nobody`` cannot reach.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.daemon_harness import PROJECT_DIR, Daemon, free_low_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534

# Prints its identity, starts a grandchild in its process group, then waits.
IDENTITY_PROGRAM = textwrap.dedent("""\
    import os, subprocess, time
    ids = f"uid={os.getuid()} euid={os.geteuid()} gid={os.getgid()} groups={os.getgroups()}"
    print(ids, f"home={os.environ.get('HOME')}", flush=True)
    child = subprocess.Popen(["sleep", "1000"])
    print(f"child={child.pid}", flush=True)
    time.sleep(1000)
""").strip().replace("\n", "; ")


def _identity_unit(extra: str = "") -> str:
    return ("[Unit]\nDescription=runs as nobody\n"
            f"[Service]\nExecStart={SYSTEM_PYTHON} -u -c {_quoted(IDENTITY_PROGRAM)}\n"
            f"User=nobody\nRestart=no\nTimeoutStopSec=5\n{extra}")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def daemon(tmp_path: Path):
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs /usr/bin/python3 (apt-get install python3)")
    instance = Daemon(tmp_path)
    instance.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    yield instance
    instance.stop()


def _log(daemon: Daemon, name: str) -> str:
    return daemon.client.request("GET", f"/units/{name}/logs", params={"tail": 50}).text


def test_unit_runs_as_its_user_logs_are_kept_and_stop_kills_the_group(daemon: Daemon) -> None:
    daemon.write_unit("who.service", _identity_unit())
    daemon.start()
    daemon.ctl("start", "who", check=True)
    status = daemon.wait_state("who", "running")
    process = psutil.Process(status["pid"])
    log = wait_for(lambda: (text := _log(daemon, "who")) and "child=" in text and text, 30,
                   "the unit's output", diagnostics=lambda: _log(daemon, "who"))
    assert process.uids().real == NOBODY and process.uids().effective == NOBODY
    assert process.gids().real == NOBODY  # nobody's primary group (nogroup)
    assert f"uid={NOBODY} euid={NOBODY}" in log
    assert "groups=[]" in log  # root's supplementary groups are not inherited
    assert "home=/nonexistent" in log or "home=/" in log  # nobody's HOME, not /root
    child_pid = int(log.split("child=")[1].split()[0])
    child = psutil.Process(child_pid)
    assert child.uids().real == NOBODY
    daemon.ctl("stop", "who", check=True)
    daemon.wait_state("who", "inactive")
    gone, alive = psutil.wait_procs([process, child], timeout=10)
    assert not alive, f"still running after stop: {alive}"


def test_ambient_capability_lets_an_unprivileged_unit_bind_a_low_port(daemon: Daemon) -> None:
    """What the gateway needs for port 80 as the unprivileged UNIT_USER."""
    port = _free_low_port()
    program = (f"import os, socket; s = socket.socket(); s.bind(('127.0.0.1', {port})); "
               "s.listen(); print('bound', os.getuid(), flush=True); "
               "import time; time.sleep(1000)")
    base = ("[Service]\nExecStart={python} -u -c {program}\nUser=nobody\nRestart=no\n"
            "TimeoutStopSec=5\n{extra}")
    daemon.write_unit("low.service", base.format(python=SYSTEM_PYTHON, program=_quoted(program),
                                                 extra="AmbientCapabilities=CAP_NET_BIND_SERVICE\n"))
    daemon.write_unit("low-nocap.service", base.format(python=SYSTEM_PYTHON,
                                                       program=_quoted(program), extra=""))
    daemon.start()
    daemon.ctl("start", "low", check=True)
    status = daemon.wait_state("low", "running")
    wait_for(lambda: f"bound {NOBODY}" in _log(daemon, "low"), 30, "the bind",
             diagnostics=lambda: _log(daemon, "low"))
    assert psutil.Process(status["pid"]).uids().effective == NOBODY
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    daemon.ctl("stop", "low", check=True)
    daemon.wait_state("low", "inactive")
    # The same unit without the capability cannot bind it: the capability is what made it work.
    daemon.ctl("start", "low-nocap")
    wait_for(lambda: "PermissionError" in _log(daemon, "low-nocap"), 30, "the refused bind",
             diagnostics=lambda: _log(daemon, "low-nocap"))


def _free_low_port() -> int:
    return free_low_port(1000)


def test_unknown_user_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    unit = tmp_path / "ghost.service"
    unit.write_text("[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n"
                    "User=no-such-user-here\n")
    result = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify", str(unit)],
                            capture_output=True, text=True, timeout=60, cwd=PROJECT_DIR)
    assert result.returncode != 0
    assert f"{unit}:5" in result.stdout + result.stderr
    assert "unknown user 'no-such-user-here'" in result.stdout + result.stderr


def test_a_daemon_that_is_not_root_refuses_to_switch_users(tmp_path: Path) -> None:
    """The runtime's own check, run as nobody (system Python + this venv's packages)."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs /usr/bin/python3")
    site = sysconfig.get_paths()["purelib"]
    probe = textwrap.dedent(f"""\
        import sys
        sys.path[:0] = [{str(PROJECT_DIR / "src")!r}, {site!r}]
        from llm_supervisor.runtimes.process.user import run_as
        assert run_as("nobody", None) is None  # its own user: nothing to switch
        try:
            run_as("root", None)
        except Exception as exc:
            print(type(exc).__name__, exc)
        """)
    if not os.access(site, os.R_OK) or site.startswith("/root"):
        pytest.skip(f"{site} is not readable by nobody")
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], user=NOBODY, group=NOBODY,
                            extra_groups=[], capture_output=True, text=True, timeout=60,
                            cwd="/")
    assert "RuntimeError_ User=root" in result.stdout, result.stdout + result.stderr
    assert "needs llm-supervisord to run as root (it runs as nobody)" in result.stdout


def test_unit_user_setting_defaults_to_a_system_user_for_a_root_daemon(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from llm_supervisor.config import load_settings

    monkeypatch.setenv("LLM_SUPERVISOR_CONFIG", "/dev/null")
    monkeypatch.delenv("UNIT_USER", raising=False)
    settings = load_settings(state_dir=tmp_path)
    assert settings.resolved_unit_user == "llm-supervisor"  # we are root here
    assert settings.expansion_vars()["UNIT_USER"] == "llm-supervisor"
    monkeypatch.setenv("UNIT_USER", "nobody")
    assert load_settings(state_dir=tmp_path).expansion_vars()["UNIT_USER"] == "nobody"
