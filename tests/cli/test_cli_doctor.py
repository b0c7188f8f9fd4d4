"""``llm-supervisorctl doctor`` under real conditions: a port held by a real listener, a
missing program in a units dir, a Docker runtime with no engine, a model dir without weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR, free_port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "none.toml").write_text("")
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / "stack.target").write_text("[Unit]\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLM_SUPERVISOR_", "MODEL_", "GATEWAY_", "DASHBOARD_", "NOVNC_",
                                "VNC_", "DOCKER_"))}
    env.update({"LLM_SUPERVISOR_CONFIG": str(tmp_path / "none.toml"),
                "LLM_SUPERVISOR_STATE_DIR": str(tmp_path / "state"),
                "LLM_SUPERVISOR_UNITS_DIR": str(units), "LLM_SUPERVISOR_RUNTIME": "process",
                "GATEWAY_PORT": str(free_port()), "MODEL_SERVICE_PORT": str(free_port()),
                "NOVNC_PORT": str(free_port()), "VNC_PORT": str(free_port()),
                "DASHBOARD_PORT": str(free_port()), "GATEWAY_PROGRAM": "caddy", **extra})
    return env


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "doctor"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR)


def test_a_clean_setup_can_run(tmp_path: Path):
    env = _env(tmp_path)
    (tmp_path / "units" / "web.service").write_text(
        f"[Service]\nExecStart={sys.executable} -m http.server\n")
    result = doctor(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK   unit web: programs found" in result.stdout
    assert "OK   python: Python 3." in result.stdout
    assert "the stack can run" in result.stdout


def test_a_port_held_by_a_real_listener_is_a_problem_with_its_fix(tmp_path: Path):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = doctor(_env(tmp_path, GATEWAY_PORT=str(port)))
    finally:
        holder.close()
    assert result.returncode == 1, result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith(f"FAIL port {port}"))
    assert f"GATEWAY_PORT 127.0.0.1:{port} is taken by pid {os.getpid()}" in line
    assert "set GATEWAY_PORT=<free port>" in result.stdout
    assert "the stack cannot run as configured" in result.stdout


def test_missing_programs_say_how_to_install_them(tmp_path: Path):
    env = _env(tmp_path)
    units = tmp_path / "units"
    (units / "viewer.service").write_text(
        "[Unit]\nConditionExecutable=no-such-viewer-xyz\n"
        "InstallHint=install with: sudo apt-get install viewer-xyz\n"
        "[Service]\nExecStart=no-such-viewer-xyz\n")
    (units / "broken.service").write_text(
        "[Unit]\nInstallHint=install with: sudo apt-get install broken-xyz\n"
        "[Service]\nExecStart=/opt/nowhere/broken-xyz --serve\n")
    result = doctor(env)
    out = result.stdout
    assert result.returncode == 1, out
    assert "WARN unit viewer: missing no-such-viewer-xyz: the unit will be skipped" in out
    assert "fix: install with: sudo apt-get install viewer-xyz" in out
    assert "FAIL unit broken: ExecStart program /opt/nowhere/broken-xyz not found" in out
    assert "fix: install with: sudo apt-get install broken-xyz" in out


def test_docker_runtime_without_an_engine(tmp_path: Path):
    env = _env(tmp_path, LLM_SUPERVISOR_RUNTIME="docker",
               DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    result = doctor(env)
    assert result.returncode == 1
    assert "FAIL docker: the docker runtime is asked for but no Docker engine answers" in \
        result.stdout
    assert "LLM_SUPERVISOR_RUNTIME=process" in result.stdout


def test_model_dir_states(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = doctor(_env(tmp_path, MODEL_PATH=str(model)))
    assert result.returncode == 0  # a warning, not a stop: repair can fetch the weights
    assert f"WARN model: {model} holds files but no weights" in result.stdout
    (model / "model.gguf").write_bytes(b"GGUF" + b"\0" * 1000)
    result = doctor(_env(tmp_path, MODEL_PATH=str(model)))
    assert "OK   model: 1 weight file(s)" in result.stdout and "without manifest" in result.stdout


def test_a_privileged_port_this_user_may_not_bind(tmp_path: Path):
    """Without CAP_NET_BIND_SERVICE (dropped from the bounding set with setpriv, as a normal
    user runs) port 80-style ports cannot be bound: said as such, not as "taken"."""
    import shutil

    import pytest

    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_NET_BIND_SERVICE")
    port = next(p for p in range(1000, 1023) if _bindable(p))
    result = subprocess.run(["setpriv", "--bounding-set", "-net_bind_service", sys.executable,
                             "-m", "llm_supervisor.cli.ctl", "doctor"],
                            env=_env(tmp_path, GATEWAY_PORT=str(port)), capture_output=True,
                            text=True, timeout=120, cwd=PROJECT_DIR)
    assert result.returncode == 1, result.stdout
    assert f"FAIL port {port}: GATEWAY_PORT: this user may not bind 127.0.0.1:{port}" in \
        result.stdout
    assert "set GATEWAY_PORT to a port above 1023" in result.stdout


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
