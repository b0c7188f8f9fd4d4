"""The CLIs end to end (background start/stop, logs -f, events), settings sources, log files."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_supervisor.config.settings import load_settings
from llm_supervisor.runtimes.logs import UnitLog
from tests.daemon_harness import Daemon, free_port, wait_for
from tests.supervisor.unit_texts import http_unit


def run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True,
                          timeout=120)


def test_background_start_wait_status_and_stop(tmp_path: Path):
    harness = Daemon(tmp_path)  # only for its paths and unit writer; started by the CLI here
    harness.write_unit("stack.target", "[Unit]\n")
    port = free_port()
    harness.write_unit("web.service", http_unit(port))
    env = harness.env
    started = run("llm_supervisor.cli.daemon_cli", "start", "--wait", "30", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "llm-supervisord started" in started.stdout and "web" in started.stdout
    status = run("llm_supervisor.cli.ctl", "status", env=env)
    assert status.returncode == 0 and "healthy" in status.stdout
    again = run("llm_supervisor.cli.daemon_cli", "start", env=env)
    assert "already running" in again.stdout
    stopped = run("llm_supervisor.cli.daemon_cli", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not harness.socket.exists()
    missing = run("llm_supervisor.cli.ctl", "status", env=env)
    assert missing.returncode == 3 and "not running" in missing.stderr


def test_second_daemon_on_the_same_state_dir_is_refused(daemon: Daemon):
    daemon.start()
    second = run("llm_supervisor.cli.daemon_cli", "start", "--foreground", env=daemon.env)
    assert second.returncode == 1 and "another llm-supervisord" in second.stderr


def test_logs_follow_and_events_stream(daemon: Daemon, tmp_path: Path):
    daemon.write_unit("talker.service", "[Service]\nExecStart=/bin/sh -c 'i=0; while true; do "
                      "echo line $i; i=$((i+1)); sleep 0.2; done'\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    daemon.wait_state("talker", "running")
    followed: list[str] = []
    events: list[str] = []

    def follow() -> None:
        for line in daemon.client.stream_lines("/units/talker/logs", {"tail": 1, "follow": 1}):
            followed.append(line)
            if len(followed) >= 4:
                return

    def watch() -> None:
        for line in daemon.client.stream_lines("/events"):
            if line.startswith("data: "):
                events.append(line)
                return

    threads = [threading.Thread(target=follow, daemon=True), threading.Thread(target=watch,
                                                                              daemon=True)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(followed) >= 4, 10, "followed log lines")
    numbers = [int(line.split()[-1]) for line in followed if line.startswith("line ")]
    assert numbers == sorted(numbers) and len(numbers) >= 3
    daemon.ctl("restart", "talker", check=True)
    wait_for(lambda: events, 10, "an SSE event")
    assert '"unit": "talker"' in events[0]


def test_settings_sources_env_toml_and_overrides(tmp_path: Path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('state_dir = "/from/toml"\nmodel_service_port = 5001\n'
                      '[vars]\nGREETING = "hello"\n')
    monkeypatch.setenv("LLM_SUPERVISOR_CONFIG", str(config))
    monkeypatch.setenv("USE_INT8", "false")
    settings = load_settings()
    assert settings.state_dir == Path("/from/toml")
    assert settings.model_service_port == 5001
    assert settings.use_int8 is False
    assert settings.expansion_vars()["GREETING"] == "hello"
    assert settings.socket == Path("/from/toml/supervisor.sock")
    monkeypatch.setenv("MODEL_SERVICE_PORT", "5002")
    assert load_settings().model_service_port == 5002  # env beats the file
    assert load_settings(state_dir=tmp_path).state_dir == tmp_path  # flags beat both


def test_unit_log_rotates_by_size_and_keeps_a_tail(tmp_path: Path):
    log = UnitLog(tmp_path / "web.log", max_bytes=1000, backups=2)
    for index in range(100):
        log.write(f"message number {index:04d}\n".encode())
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["web.log", "web.log.1", "web.log.2"]
    assert all(os.path.getsize(tmp_path / name) <= 1000 + 20 for name in files)
    assert log.last(2) == ["message number 0098", "message number 0099"]
    assert log.read_file_tail(1) == ["message number 0099"]


def test_gateway_port_defaults_to_80_when_allowed_else_8000(monkeypatch):
    from llm_supervisor.config import settings as settings_module

    monkeypatch.delenv("GATEWAY_PORT", raising=False)
    monkeypatch.setattr(settings_module, "_may_bind_port", lambda port: False)
    assert load_settings().gateway_port == 8000
    monkeypatch.setattr(settings_module, "_may_bind_port", lambda port: True)
    assert load_settings().gateway_port == 80
    monkeypatch.setenv("GATEWAY_PORT", "8123")
    assert load_settings().gateway_port == 8123
    monkeypatch.undo()
    # The real permission check: root may bind 80; otherwise the kernel's unprivileged start.
    unprivileged = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    assert settings_module._may_bind_port(80) is (os.geteuid() == 0 or unprivileged <= 80)


@pytest.mark.parametrize("config_text", [
    "", 'model_service_port = 5001\n[vars]\nGREETING = "hello"\n',
    'state_dir = "/from/toml"\n', 'STATE_DIR = "/from/toml/upper"\n',
    'socket_path = "/from/toml/ctl.sock"\n', 'LLM_SUPERVISOR_SOCKET = "/from/toml/env-name.sock"\n',
    '"state_dir" = "/quoted/key"\n', '"state\\u005fdir" = "/escaped/key"\n',
])
def test_the_cli_finds_the_socket_the_settings_name(tmp_path: Path, monkeypatch,
                                                    config_text: str) -> None:
    """``status`` resolves the socket without pydantic-settings unless the config file could
    move it; either way it is the socket full settings resolve."""
    from llm_supervisor.cli.common import socket_from
    from llm_supervisor.config.paths import quick_socket_path

    config = tmp_path / "config.toml"
    config.write_text(config_text)
    monkeypatch.setenv("LLM_SUPERVISOR_CONFIG", str(config))
    for name in ("LLM_SUPERVISOR_SOCKET", "LLM_SUPERVISOR_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    args = argparse.Namespace(socket=None, state_dir=None)
    assert socket_from(args) == load_settings().socket
    names_a_key = any(key in config_text.lower() for key in ("state", "socket"))
    assert (quick_socket_path(None, None) is None) == names_a_key
    monkeypatch.setenv("LLM_SUPERVISOR_STATE_DIR", str(tmp_path / "env"))
    assert socket_from(args) == load_settings().socket
    flags = argparse.Namespace(socket=None, state_dir=tmp_path / "flag")
    assert socket_from(flags) == load_settings(state_dir=tmp_path / "flag").socket
