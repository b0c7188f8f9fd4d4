"""``llm-supervisord start --wait`` ends as run.sh did: progress while waiting, a smoke test
through the gateway, the instructions with the real ports; exit 1 when the smoke test fails."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.cli.cli_stack import StackDaemon, stack_env
from tests.daemon_harness import free_port
from tests.model_fixtures import build_gguf_model

TINY_HTTP = Path(__file__).parents[1] / "programs" / "tiny_http.py"


@pytest.mark.slow
def test_start_wait_smoke_tests_and_prints_the_instructions(tmp_path: Path):
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed: sudo apt-get install caddy")
    model_dir = build_gguf_model(tmp_path / "model")
    desktop = ["xvfb.service", "x11vnc.service", "novnc.service"]
    if not all(shutil.which(p) for p in ("Xvfb", "x11vnc", "websockify")):
        desktop = []  # the noVNC lines are then not printed (checked below)
    env = {**stack_env(model_dir), "NOVNC_PORT": str(free_port()), "VNC_PORT": str(free_port())}
    daemon = StackDaemon(tmp_path / "stack", ["model-service.service", "gateway.service",
                                              "stack.target", *desktop], env)
    try:
        started = daemon.cli("start", "--wait", "180")
        out = started.stdout
        assert started.returncode == 0, out + started.stderr + daemon.log_tail()
        port = daemon.env["GATEWAY_PORT"]
        # progress while waiting (not a terminal: one line per change)
        assert "waiting for the units to come up" in out
        assert "model-service: running, health healthy" in out
        # the smoke test, with latencies
        assert "PASS health (" in out and "PASS generate (" in out and " ms)" in out
        # the instructions with the real ports
        assert f"Test page   http://127.0.0.1:{port}/" in out
        assert "Gateway     caddy 2.6.2" in out  # which gateway runs, and its version
        assert f"Dashboard   http://127.0.0.1:{daemon.env['DASHBOARD_PORT']}/" in out
        assert f"curl http://localhost:{port}/api/health" in out
        assert f"curl http://localhost:{port}/api/generate -d" in out
        assert "llm-supervisord stop" in out
        if desktop:
            password = (daemon.state_dir / "desktop" / "vnc-password").read_text().strip()
            assert f"noVNC       http://127.0.0.1:{env['NOVNC_PORT']}/vnc.html" in out
            assert f"password    {password}" in out
    finally:
        stopped = daemon.cli("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.mark.slow
def test_start_wait_exits_1_when_the_smoke_test_fails(tmp_path: Path):
    """A "model service" that is up and healthy but cannot generate (a plain HTTP program that
    answers GET only): every unit settles, the smoke test fails, the exit code says so."""
    daemon = StackDaemon(tmp_path / "stack", ["stack.target"], {})
    port = free_port()
    daemon.env["MODEL_SERVICE_PORT"] = str(port)
    daemon.write_unit("model-service.service", (
        f"[Service]\nExecStart={sys.executable} {TINY_HTTP} {port}\n"
        f"[Health]\nCheck=http://127.0.0.1:{port}/\nInterval=0.3\n"
        "[Install]\nWantedBy=stack.target\n"))
    try:
        started = daemon.cli("start", "--wait", "60")
        out = started.stdout
        assert started.returncode == 1, out + started.stderr
        assert "PASS health" in out and "FAIL generate" in out
        assert "Test page" not in out  # no gateway unit in this stack
    finally:
        daemon.cli("stop")


@pytest.mark.slow
def test_start_wait_shows_the_model_loading(tmp_path: Path, tiny_model_dir: Path):
    """The transformers engine on the tiny model loads for a few seconds: the wait says so with
    the loading line (stage, percent, elapsed, ETA) instead of silence."""
    daemon = StackDaemon(tmp_path / "stack", ["model-service.service", "stack.target"],
                         {**stack_env(tiny_model_dir), "ENGINE": "transformers",
                          "USE_INT8": "false", "DTYPE": "float32"})
    try:
        started = daemon.cli("start", "--wait", "180")
        out = started.stdout
        assert started.returncode == 0, out + started.stderr + daemon.log_tail()
        loading = [line for line in out.splitlines() if "model loading" in line]
        assert loading, out
        assert all(" elapsed " in line and " ETA " in line and "%" in line for line in loading)
        assert "PASS generate" in out
    finally:
        daemon.cli("stop")
