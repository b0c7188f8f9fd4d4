"""Daemon hardening (issue 9): bounded log lines, probes that cannot kill the health loop,
serialised reloads, the control socket's path, the state directory's mode, markup-safe
``status``, a rotated ``daemon.log`` and a repair budget that survives restarts.

Real daemons, real processes, real sockets and files throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.context import Limits
from llm_supervisor.runtimes.logs import (
    FOLLOWER_MAX_CHARS,
    MAX_LINE_CHARS,
    SPLIT_MARKER,
    TAIL_MAX_CHARS,
    UnitLog,
)
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.units.model import HealthSpec
from tests.daemon_harness import PROJECT_DIR, Daemon, free_port, wait_for
from tests.supervisor.unit_texts import http_unit

LONGEST = MAX_LINE_CHARS + len(SPLIT_MARKER)


# ---------------------------------------------------------------------------- logs


def test_output_without_newlines_is_split_in_linear_time(tmp_path: Path):
    """10 MB without a newline in 4 KiB chunks: the old code re-joined the pending line on every
    chunk (quadratic: gigabytes of copying) and held all of it as one line."""
    log = UnitLog(tmp_path / "noisy.log", max_bytes=100 * 1024 * 1024)
    chunk = b"x" * 4096
    started = time.process_time()
    for _ in range(10 * 1024 * 1024 // 4096):
        log.write(chunk)
    log.write(b"\nafter\n")
    cpu = time.process_time() - started
    log.close()
    assert cpu < 3.0, f"{cpu:.2f}s of CPU for 10 MB"
    lines = (tmp_path / "noisy.log").read_text().split("\n")
    assert max(len(line) for line in lines) == LONGEST
    assert lines[0].endswith(SPLIT_MARKER)
    assert sum(len(line.removesuffix(SPLIT_MARKER)) for line in lines[:-3]) == 10 * 1024 * 1024
    assert log.last(1) == ["after"]
    assert max(len(line) for line in log.tail) <= LONGEST
    assert sum(len(line) for line in log.tail) <= TAIL_MAX_CHARS + LONGEST


def test_a_follower_that_does_not_read_holds_bounded_memory(tmp_path: Path):
    async def scenario() -> int:
        log = UnitLog(tmp_path / "f.log", max_bytes=100 * 1024 * 1024)
        lines = log.follow()
        first = asyncio.ensure_future(lines.__anext__())
        await asyncio.sleep(0)  # the follower is registered, waiting
        for _ in range(20 * 1024 * 1024 // 65536):  # 20 MB the reader does not take
            log.write(b"z" * 65535 + b"\n")
        received = len(await first)
        while True:
            try:
                received += len(await asyncio.wait_for(lines.__anext__(), 0.2))
            except TimeoutError:
                break
        await lines.aclose()
        log.close()
        return received

    received = asyncio.run(scenario())
    assert 0 < received <= FOLLOWER_MAX_CHARS


def test_multibyte_characters_split_across_chunks_survive(tmp_path: Path):
    log = UnitLog(tmp_path / "utf8.log")
    data = "zażółć gęślą jaźń\n".encode()
    for index in range(len(data)):
        log.write(data[index:index + 1])
    log.close()
    assert log.last(1) == ["zażółć gęślą jaźń"]
    assert (tmp_path / "utf8.log").read_text() == "zażółć gęślą jaźń\n"


def test_real_program_writing_10mb_without_newlines(daemon: Daemon):
    program = ("import sys, time; sys.stdout.buffer.write(b'y' * 10_000_000); "
               "sys.stdout.buffer.write(b'\\ndone\\n'); sys.stdout.flush(); time.sleep(600)")
    daemon.write_unit("blob.service", f"[Service]\nExecStart={sys.executable} -c \"{program}\"\n"
                      "[Install]\nWantedBy=stack.target\n")
    daemon.start()
    assert daemon.proc is not None
    cpu_before = sum(psutil.Process(daemon.proc.pid).cpu_times()[:2])
    wait_for(lambda: "done" in daemon.unit("blob")["log_tail"], 60, "the line after the blob")
    cpu = sum(psutil.Process(daemon.proc.pid).cpu_times()[:2]) - cpu_before
    unit = daemon.unit("blob")
    assert unit["state"] == "running"
    assert max(len(line) for line in unit["log_tail"]) <= LONGEST
    text = (daemon.state_dir / "logs" / "blob.log").read_text()
    assert max(len(line) for line in text.split("\n")) <= LONGEST
    assert text.count("y") == 10_000_000
    assert cpu < 10, f"the daemon spent {cpu:.1f}s of CPU on 10 MB of output"
    tail = daemon.ctl("logs", "blob", "-n", "3").stdout.splitlines()
    assert tail[-1] == "done" and len(tail[-2]) <= LONGEST


# ---------------------------------------------------------------------------- health probes


@pytest.mark.parametrize("kind,target,expected", [
    ("http", "http://[::1/", "InvalidURL"),  # httpx.InvalidURL: neither OSError nor HTTPError
    ("http", "http://127.0.0.1:99999/", "port"),  # an ExceptionGroup from the transport
    ("tcp", "127.0.0.1:not-a-port", "ValueError"),
    ("exec", "/no/such/probe-program", "FileNotFoundError"),
])
def test_any_probe_error_is_a_failed_check_with_its_reason(kind: str, target: str, expected: str):
    async def probe() -> tuple[bool, str]:
        prober = Prober()
        try:
            result = await prober.probe(HealthSpec(kind=kind, target=target, timeout=5))
        finally:
            await prober.close()
        return result.ok, result.detail

    ok, detail = asyncio.run(probe())
    assert ok is False
    assert expected in detail, detail


# ---------------------------------------------------------------------------- reload


def test_concurrent_reloads_and_sighup_are_serialised(daemon: Daemon):
    """Two ``POST /reload`` and a SIGHUP while a changed unit takes a second to stop: each
    reload runs after the previous one (before: both popped the same runner, KeyError, 500)."""
    port_a, port_b = free_port(), free_port()
    daemon.write_unit("a.service", http_unit(port_a))
    slow_stop = "TimeoutStopSec=1"
    daemon.write_unit("b.service", http_unit(port_b, "--ignore-term", service_extra=slow_stop))
    daemon.start()
    a = daemon.wait_state("a", "running", health="healthy")
    daemon.wait_state("b", "running", health="healthy")
    daemon.write_unit("b.service", http_unit(port_b, "--ignore-term", service_extra=slow_stop)
                      .replace("tiny http", "tiny http v2"))
    results: list[object] = []

    def reload() -> None:
        client = ControlClient(daemon.socket, timeout=60)
        try:
            results.append(client.post("/reload"))
        except (ControlError, DaemonNotRunning) as exc:
            results.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=reload) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, dict) for r in results), results
    changed = [r["changed"] for r in results if isinstance(r, dict)]
    assert sorted(changed) in (
        [[], []], [[], ["b.service"]]), changed  # the SIGHUP may have been first
    assert not [e for e in daemon.events() if e.get("event") == "reload_failed"]
    assert "KeyError" not in daemon.log_text()
    b = daemon.wait_state("b", "running", health="healthy", timeout=20)
    assert "v2" in b["description"]
    assert daemon.unit("a")["pid"] == a["pid"]
    reloaded = [e for e in daemon.events() if e.get("event") == "reloaded"]
    assert sum(e["changed"] == ["b.service"] for e in reloaded) == 1


# ---------------------------------------------------------------------------- control socket


def _start_fails(daemon: Daemon) -> str:
    """Start a daemon that must refuse; returns its log."""
    with pytest.raises(AssertionError, match="daemon exited 1"):
        daemon.start(timeout=30)
    return daemon.log_text()


def test_regular_file_at_the_socket_path_is_an_error_and_is_kept(daemon: Daemon):
    daemon.state_dir.mkdir(parents=True)
    daemon.socket.write_text("precious")
    log = _start_fails(daemon)
    assert f"{daemon.socket} exists and is a file, not a socket; nothing was deleted" in log
    assert daemon.socket.read_text() == "precious"


def test_stale_socket_is_replaced(daemon: Daemon):
    daemon.state_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(daemon.socket))
    stale.close()  # the file stays, nobody answers: what a SIGKILLed daemon leaves
    assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode)
    daemon.start()
    assert daemon.client.get("/ping")["pid"] == daemon.proc.pid  # type: ignore[union-attr]


def test_a_live_socket_of_another_daemon_is_left_alone(daemon: Daemon, tmp_path: Path):
    daemon.start()
    other = Daemon(tmp_path / "other", env={"LLM_SUPERVISOR_SOCKET": str(daemon.socket)})
    other.write_unit("stack.target", "[Unit]\n")
    log = _start_fails(other)
    assert f"something already answers on {daemon.socket}" in log
    assert daemon.client.get("/ping")["pid"] == daemon.proc.pid  # type: ignore[union-attr]


def test_second_daemon_on_the_same_state_dir_is_refused_first(daemon: Daemon):
    daemon.start()
    second = subprocess.run(
        [sys.executable, "-m", "llm_supervisor.cli.daemon_cli", "start", "--foreground"],
        env=daemon.env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"another llm-supervisord (pid {daemon.proc.pid})" in second.stderr  # type: ignore[union-attr]
    assert daemon.client.get("/ping")["pid"] == daemon.proc.pid  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- state dir


def test_new_state_dir_is_private(daemon: Daemon):
    daemon.start()
    assert stat.S_IMODE(os.stat(daemon.state_dir).st_mode) == 0o700


@pytest.mark.parametrize("mode,warned", [(0o755, False), (0o770, True), (0o777, True)])
def test_existing_state_dir_keeps_its_mode(daemon: Daemon, mode: int, warned: bool):
    daemon.state_dir.mkdir()
    os.chmod(daemon.state_dir, mode)
    daemon.start()
    assert stat.S_IMODE(os.stat(daemon.state_dir).st_mode) == mode
    warnings = [e for e in daemon.events() if e.get("event") == "state_dir_writable_by_others"]
    assert bool(warnings) is warned
    if warned:
        assert warnings[0]["mode"] == oct(mode) and "chmod go-w" in warnings[0]["hint"]


# ---------------------------------------------------------------------------- status markup


def test_status_prints_markup_in_reasons_as_text(daemon: Daemon, tmp_path: Path):
    missing = tmp_path / "[/x]" / "[bold]missing"
    daemon.write_unit("odd.service", f"[Unit]\nDescription=odd [/x] [bold]unit\n"
                      f"ConditionPathExists={missing}\nInstallHint=run [red]this[/red]\n"
                      "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    unit = daemon.wait_state("odd", "skipped")
    assert "[/x]" in unit["reason"]
    result = subprocess.run(
        [sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket", str(daemon.socket),
         "status"], env={**daemon.env, "COLUMNS": "400"}, capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr
    packed = "".join(result.stdout.split())  # the table folds long cells across lines
    assert "odd" in packed and "skipped" in packed
    assert "[/x]/[bold]missingdoesnotexist" in packed
    assert "run[red]this[/red]" in packed


# ---------------------------------------------------------------------------- daemon.log


def test_background_daemon_log_is_rotated_by_size(tmp_path: Path):
    state, units = tmp_path / "state", tmp_path / "units"
    units.mkdir()
    (units / "stack.target").write_text("[Unit]\n")
    env = {**os.environ, "LLM_SUPERVISOR_STATE_DIR": str(state),
           "LLM_SUPERVISOR_UNITS_DIR": str(units), "LLM_SUPERVISOR_RUNTIME": "process",
           "LLM_SUPERVISOR_LOG_MAX_BYTES": "3000", "LLM_SUPERVISOR_LOG_BACKUPS": "2"}
    env.pop("LLM_SUPERVISOR_SOCKET", None)
    cli = [sys.executable, "-m", "llm_supervisor.cli.daemon_cli"]
    started = subprocess.run([*cli, "start"], env=env, cwd=PROJECT_DIR, capture_output=True,
                             text=True, timeout=90)
    assert started.returncode == 0, started.stdout + started.stderr
    client = ControlClient(state / "supervisor.sock", timeout=30)
    try:
        for _ in range(60):  # each reload logs one "reloaded" event
            client.post("/reload")
        log = state / "daemon.log"
        wait_for(lambda: (state / "daemon.log.2").exists(), 20, "two rotations")
        assert not (state / "daemon.log.3").exists()
        events = []
        for path in (log, state / "daemon.log.1", state / "daemon.log.2"):
            text = path.read_text()
            assert len(text.encode()) <= 3000 + 1000, (path, len(text))
            # Whole JSON lines only: no event cut in two by a rotation.
            events += [json.loads(line) for line in text.splitlines()]
        assert sum(e["event"] == "reloaded" for e in events) >= 10
        # An external rotator moves the file away; reopen-logs makes the daemon follow.
        os.replace(log, state / "daemon.log.moved")
        client.post("/reopen-logs")
        client.post("/reload")
        assert '"reloaded"' in log.read_text()
    finally:
        client.close()
        stopped = subprocess.run([*cli, "stop"], env=env, cwd=PROJECT_DIR, capture_output=True,
                                 text=True, timeout=90)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert '"daemon_stopped"' in "".join(
        p.read_text() for p in (state / "daemon.log", state / "daemon.log.1"))


# ---------------------------------------------------------------------------- repair budget


def test_repair_budget_survives_a_restart(tmp_path: Path):
    path = tmp_path / "state" / "repair-budget.json"
    limits = Limits(attempts=2, max_per_window=10, window_sec=3600)
    first = Budget(path=path)
    assert first.exhausted("model.service", limits) is None
    first.record("model.service", limits, "weights truncated")
    first.record("model.service", limits, "weights truncated again")
    assert first.exhausted("model.service", limits)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second = Budget(path=path)  # what a restarted daemon sees
    assert "2 repair attempt(s) in a row" in (second.exhausted("model.service", limits) or "")
    assert second.last_message("model.service") == "weights truncated again"
    second.healthy("model.service")
    assert Budget(path=path).exhausted("model.service", limits) is None
    second.reset("model.service")
    assert json.loads(path.read_text())["units"] == {}
    assert [p.name for p in path.parent.iterdir()] == ["repair-budget.json"]  # no temp files


def test_unreadable_repair_budget_starts_fresh(tmp_path: Path):
    path = tmp_path / "repair-budget.json"
    path.write_text("{not json")
    budget = Budget(path=path)
    limits = Limits(attempts=1)
    assert budget.exhausted("u", limits) is None
    budget.record("u", limits, "m")
    assert json.loads(path.read_text())["units"]["u"]["streak"] == 1
