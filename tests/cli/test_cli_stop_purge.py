"""Stop like stop.sh: on a terminal (a real pty) ``llm-supervisord stop`` asks whether to delete
caches and volumes (default no); ``--purge [--yes]`` lists, then removes only what the daemon
created in the state directory (and our Docker objects); scripts are never asked."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR, Daemon, wait_for


def _daemon(tmp_path: Path, model_path: Path | None = None) -> Daemon:
    env = {"LLM_SUPERVISOR_CONFIG": str(tmp_path / "none.toml"), "DASHBOARD_PORT": "0"}
    if model_path is not None:
        env["MODEL_PATH"] = str(model_path)
    (tmp_path / "none.toml").write_text("")
    daemon = Daemon(tmp_path, env)
    daemon.write_unit("stack.target", "[Unit]\n")
    daemon.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n"
                      "[Install]\nWantedBy=stack.target\n")
    return daemon


def _caches(state: Path) -> list[Path]:
    """What a stack leaves in its state dir: converted model, hub cache, repair store."""
    files = [state / "models" / "default" / "model.safetensors",
             state / "home" / ".cache" / "huggingface" / "hub" / "blob",
             state / "repair-store" / "model-service" / "blobs" / "abc"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    return files


def _cli(daemon: Daemon, *argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", *argv],
                          env=daemon.env, capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_DIR, **kwargs)


def _start(daemon: Daemon) -> None:
    started = _cli(daemon, "start", stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stdout + started.stderr
    wait_for(lambda: daemon.unit("idle")["state"] == "running", 30, "the unit")


def _stop_on_a_terminal(daemon: Daemon, answer: str, *extra: str) -> tuple[int, str]:
    """``llm-supervisord stop`` with a pty as its terminal; ``answer`` typed at the prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "stop",
                             *extra], env=daemon.env, stdin=follower, stdout=follower,
                            stderr=follower, cwd=PROJECT_DIR, close_fds=True)
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                os.write(leader, answer.encode() + b"\r")
                answered = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(30)
    finally:
        os.close(leader)
    return code, output.decode(errors="replace")


def test_stop_on_a_terminal_asks_and_keeps_caches_by_default(tmp_path: Path):
    daemon = _daemon(tmp_path)
    _start(daemon)
    caches = _caches(daemon.state_dir)  # made by the running stack (item 11: only ours go)
    code, out = _stop_on_a_terminal(daemon, "")  # Enter: the default, no
    assert code == 0, out
    assert "Also delete the caches and volumes? [y/N]" in out
    assert "model cache and converted models" in out and "repair store" in out
    assert "llm-supervisord stopped" in out and "purged" not in out
    assert all(path.exists() for path in caches)


def test_stop_on_a_terminal_answered_yes_deletes_only_the_state_dirs_caches(tmp_path: Path):
    outside = tmp_path / "my-models"
    outside.mkdir()
    (outside / "model.gguf").write_bytes(b"GGUF")
    daemon = _daemon(tmp_path, model_path=outside)
    _start(daemon)
    caches = _caches(daemon.state_dir)  # made by the running stack (item 11: only ours go)
    code, out = _stop_on_a_terminal(daemon, "y")
    assert code == 0, out
    assert "stopped and purged" in out
    assert not any(path.exists() for path in caches)
    assert not (daemon.state_dir / "logs").exists()
    assert f"kept: MODEL_PATH {outside}" in out
    assert (outside / "model.gguf").read_bytes() == b"GGUF"  # configured outside: untouched


def test_scripts_are_never_asked(tmp_path: Path):
    daemon = _daemon(tmp_path)
    _start(daemon)
    caches = _caches(daemon.state_dir)  # made by the running stack (item 11: only ours go)
    refused = _cli(daemon, "stop", "--purge", stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "without --yes" in refused.stderr
    assert "[y/N]" not in refused.stdout
    assert daemon.unit("idle")["state"] == "running"  # nothing was stopped or removed
    assert all(path.exists() for path in caches)
    stopped = _cli(daemon, "stop", stdin=subprocess.DEVNULL)
    assert stopped.returncode == 0 and "[y/N]" not in stopped.stdout
    assert all(path.exists() for path in caches)


def test_purge_yes_lists_then_removes_volumes_and_caches(tmp_path: Path):
    daemon = _daemon(tmp_path)
    volume = None
    try:
        import docker

        from llm_supervisor.runtimes.docker.labels import OWNER, PROJECT, PROJECT_VALUE
        from llm_supervisor.runtimes.docker.labels import owner_id as owner_of

        client = docker.from_env(timeout=10)
        client.ping()
        volume = client.volumes.create(
            name=f"llm-test-purge-{os.getpid()}",
            labels={PROJECT: PROJECT_VALUE, OWNER: owner_of(daemon.state_dir)})
    except Exception:
        client = None  # no engine here: the file part is still tested
    _start(daemon)
    caches = _caches(daemon.state_dir)  # made by the running stack (item 11: only ours go)
    try:
        result = _cli(daemon, "stop", "--purge", "--yes", stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        listing = out.index("--purge removes:")
        assert out.index(str(caches[0].parents[1])) > listing  # listed before "stopped"
        assert out.index("llm-supervisord stopped and purged") > out.index("model cache")
        assert not any(path.exists() for path in caches)
        if volume is not None:
            assert f"docker volume {volume.name}" in out
            assert not client.volumes.list(filters={"name": volume.name})
    finally:
        if volume is not None:
            with contextlib.suppress(Exception):  # removed by the purge unless it failed
                volume.remove()
