"""Fault suite for the daemon itself: SIGKILL in the middle of a repair and of a reload, two
repairs at once, and a full disk (a real small tmpfs) under the logs and the records.

What must hold each time: the daemon comes back (or keeps serving), nothing is lost (the model
ends verified, the new unit definition is used, logs resume), and no process is left behind that
no daemon knows about.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning
from llm_supervisor.model_server.weights.manifest import verify_model_dir
from tests.daemon_harness import Daemon, free_port, wait_for
from tests.faults.fault_daemon_helpers import (
    DAEMON_ENV,
    WEIGHTS,
    GatedHub,
    fake_model,
    fill_disk,
    gated_hub,
    model_unit_text,
    noisy_unit_text,
    repair_workdirs,
    small_tmpfs,
    truncate_weights,
    unit_processes,
)

TINY_HTTP = Path(__file__).resolve().parents[1] / "programs" / "tiny_http.py"


def http_unit(port: int, *args: str, description: str = "tiny http", extra: str = "") -> str:
    import sys

    return (f"[Unit]\nDescription={description}\n[Service]\n"
            f"ExecStart={sys.executable} {TINY_HTTP} {port} {' '.join(args)}\n"
            f"RestartSec=0.2\n{extra}\n[Health]\nCheck=http://127.0.0.1:{port}/\nInterval=0.3\n"
            "Timeout=2\nRetries=3\n[Install]\nWantedBy=stack.target\n")


def events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == name]


def post_in_background(daemon: Daemon, path: str) -> tuple[threading.Thread, list[Any]]:
    """POST from a thread (the call blocks until the daemon answers, or dies)."""
    outcome: list[Any] = []

    def call() -> None:
        client = ControlClient(daemon.socket, timeout=300)
        try:
            outcome.append(client.post(path))
        except (ControlError, DaemonNotRunning) as exc:
            outcome.append(exc)
        finally:
            client.close()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def assert_one_process_per_unit(daemon: Daemon, expected: dict[str, set[int]]) -> None:
    """Exactly the processes the running daemon reports (and their children): no orphans."""
    def settled() -> bool:
        found: dict[str, set[int]] = {}
        for pid, unit in unit_processes(daemon.state_dir).items():
            found.setdefault(unit, set()).add(pid)
        return found == expected

    wait_for(settled, 20, f"unit processes to be exactly {expected}",
             diagnostics=lambda: f"found {unit_processes(daemon.state_dir)}")


# ---------------------------------------------------------------------------- a slow repair


@pytest.fixture
def model_stack(tmp_path: Path) -> Iterator[tuple[Daemon, Path, GatedHub]]:
    model = fake_model(tmp_path / "model")
    with gated_hub(tmp_path, model) as hub:
        daemon = Daemon(tmp_path / "daemon", env=DAEMON_ENV)
        daemon.write_unit("stack.target", "[Unit]\n")
        daemon.write_unit("model.service", model_unit_text(free_port(), model, hub,
                                                           tmp_path / "hf-home"))
        daemon.write_unit("web.service", http_unit(free_port(), "--grandchild"))
        daemon.start()
        daemon.wait_state("model", "running", health="healthy")
        daemon.wait_state("web", "running", health="healthy")
        try:
            yield daemon, model, hub
        finally:
            hub.gate.set()
            daemon.stop()


@pytest.mark.slow
def test_daemon_sigkilled_during_an_automatic_repair(model_stack: tuple[Daemon, Path, GatedHub]):
    daemon, model, hub = model_stack
    web = daemon.unit("web")
    web_grandchild = wait_for(lambda: [p for p, u in unit_processes(daemon.state_dir).items()
                                       if u == "web.service" and p != web["pid"]], 10,
                              "web's grandchild")[0]
    truncate_weights(model)
    os.kill(daemon.unit("model")["pid"], signal.SIGKILL)
    wait_for(lambda: daemon.unit("model")["state"] == "repairing" and hub.downloads(), 30,
             "the repair to be downloading (held at the gate)")
    assert repair_workdirs(model, daemon.state_dir), "the repair's work directory exists mid-repair"
    daemon.kill9()

    hub.gate.set()  # the hub answers from now on
    daemon.start()
    healed = daemon.wait_state("model", "running", health="healthy", timeout=90)
    assert verify_model_dir(model) == []  # nothing lost: the model is whole again
    assert not repair_workdirs(model, daemon.state_dir), "the interrupted repair's work dir is cleaned up"
    finished = events(daemon, "model_repair_finished")
    assert finished and finished[-1]["ok"] is True and WEIGHTS in finished[-1]["message"]
    web_again = daemon.wait_state("web", "running", health="healthy")
    assert web_again["pid"] != web["pid"]
    children = {p for p, u in unit_processes(daemon.state_dir).items()
                if u == "web.service" and p != web_again["pid"]}
    assert web_grandchild not in children
    assert_one_process_per_unit(daemon, {"model.service": {healed["pid"]},
                                         "web.service": {web_again["pid"], *children}})
    # The records name what runs now; the repair budget kept the attempt made before the kill.
    records = json.loads((daemon.state_dir / "instances.json").read_text())
    assert {r["pid"] for r in records.values()} == {healed["pid"], web_again["pid"]}
    budget = json.loads((daemon.state_dir / "repair-budget.json").read_text())
    assert len(budget["units"]["model.service"]["times"]) == 2


@pytest.mark.slow
def test_two_repairs_by_hand_at_once(model_stack: tuple[Daemon, Path, GatedHub]):
    """The second is refused with 409 at once; the first is not disturbed (before: the second
    deleted the first's work directory)."""
    daemon, model, hub = model_stack
    truncate_weights(model)  # the running program read it already: nothing notices
    first, outcome = post_in_background(daemon, "/units/model/repair")
    wait_for(lambda: hub.downloads(), 30, "the first repair to be downloading")
    workdirs = repair_workdirs(model, daemon.state_dir)
    assert workdirs
    with pytest.raises(ControlError) as refused:
        daemon.client.post("/units/model/repair")
    assert refused.value.status == 409 and "already running" in str(refused.value)
    result = daemon.ctl("repair", "model")
    assert result.returncode == 1 and "already running" in result.stderr + result.stdout
    assert repair_workdirs(model, daemon.state_dir) == workdirs
    hub.gate.set()
    first.join(60)
    assert isinstance(outcome[0], dict) and outcome[0]["ok"] is True, outcome
    daemon.wait_state("model", "running", health="healthy", timeout=30)
    assert verify_model_dir(model) == []
    assert len(events(daemon, "model_repair_started")) == 1


# ---------------------------------------------------------------------------- a slow reload


@pytest.mark.slow
def test_daemon_sigkilled_during_a_reload(tmp_path: Path):
    daemon = Daemon(tmp_path)
    daemon.write_unit("stack.target", "[Unit]\n")
    port_a, port_b = free_port(), free_port()
    daemon.write_unit("a.service", http_unit(port_a))
    # b ignores SIGTERM: the reload spends TimeoutStopSec stopping it, and the SIGTERM a dying
    # daemon's children get (PDEATHSIG) does not end it either.
    slow = "TimeoutStopSec=8"
    daemon.write_unit("b.service", http_unit(port_b, "--ignore-term", "--grandchild", extra=slow))
    daemon.start()
    try:
        a = daemon.wait_state("a", "running", health="healthy")
        b = daemon.wait_state("b", "running", health="healthy")
        old_b = {p for p, u in unit_processes(daemon.state_dir).items() if u == "b.service"}
        assert len(old_b) == 2  # b and its grandchild
        daemon.write_unit("b.service", http_unit(port_b, "--ignore-term", "--grandchild",
                                                  description="tiny http v2", extra=slow))
        reload, _ = post_in_background(daemon, "/reload")
        wait_for(lambda: daemon.unit("b")["state"] == "stopping", 20, "the reload stopping b")
        daemon.kill9()
        reload.join(30)

        daemon.start()
        b2 = daemon.wait_state("b", "running", health="healthy", timeout=60)
        a2 = daemon.wait_state("a", "running", health="healthy")
        assert "v2" in b2["description"]  # nothing lost: the new definition is in use
        assert b2["pid"] != b["pid"] and a2["pid"] != a["pid"]
        now = unit_processes(daemon.state_dir)
        assert not old_b & set(now), "the old b (which ignores SIGTERM) and its child are gone"
        b_children = {p for p, u in now.items() if u == "b.service" and p != b2["pid"]}
        assert_one_process_per_unit(daemon, {"a.service": {a2["pid"]},
                                             "b.service": {b2["pid"], *b_children}})
        assert httpx.get(f"http://127.0.0.1:{port_b}/", timeout=5).text == "ok"
    finally:
        daemon.stop()


# ---------------------------------------------------------------------------- a full disk


@pytest.mark.slow
def test_full_disk_under_the_logs(tmp_path: Path):
    """The unit keeps running and answering, the daemon keeps serving, one warning is logged,
    and the log file resumes (saying how much it missed) once there is space again."""
    daemon = Daemon(tmp_path)
    port = free_port()
    with small_tmpfs(daemon.state_dir, "4m"):
        daemon.write_unit("stack.target", "[Unit]\n")
        daemon.write_unit("noisy.service", noisy_unit_text(port))
        daemon.start()
        try:
            unit = daemon.wait_state("noisy", "running", health="healthy")
            log_file = daemon.state_dir / "logs" / "noisy.log"
            filler = fill_disk(daemon.state_dir)
            wait_for(lambda: any("cannot write the log file" in line
                                 for line in daemon.unit("noisy")["log_tail"]), 10,
                     "the unit log to notice the full disk")
            size_when_full = log_file.stat().st_size
            # 100 KB/s of output fills a 64 KiB pipe in under a second if nobody drains it;
            # every answer below needs a print() to get through first.
            deadline = time.monotonic() + 4
            answers = 0
            while time.monotonic() < deadline:
                assert httpx.get(f"http://127.0.0.1:{port}/x", timeout=3).text == "ok"
                answers += 1
                time.sleep(0.1)
            assert answers >= 10
            now = daemon.unit("noisy")
            assert now["state"] == "running" and now["pid"] == unit["pid"]
            assert any(line.startswith("request /x") for line in now["log_tail"])
            assert log_file.stat().st_size == size_when_full
            warnings = [e for e in events(daemon, "unit_log_write_failed")
                        if e["log"] == str(log_file)]
            assert len(warnings) == 1 and "No space left on device" in warnings[0]["error"]

            filler.unlink()
            resumed = wait_for(lambda: re.search(
                r"\[llm-supervisord\] (\d+) bytes of output were not written here \(No space "
                r"left on device\); writing resumed\n(chatter|request)", log_file.read_text()),
                10, "the log file to resume")
            assert int(resumed.group(1)) > 100_000  # 4 s of output at 100 KB/s
            assert daemon.unit("noisy")["log_dropped_bytes"] == int(resumed.group(1))
            assert daemon.unit("noisy")["pid"] == unit["pid"]
        finally:
            daemon.stop()


@pytest.mark.slow
def test_full_disk_under_the_records(tmp_path: Path):
    """Starting a unit writes its record: on a full disk the unit still starts and runs (before:
    it failed), the daemon says the records are not saved and retries; with space again the
    record of what runs now is written, without any command (issue 18, "also")."""
    daemon = Daemon(tmp_path)
    port = free_port()
    with small_tmpfs(daemon.state_dir, "1m"):
        daemon.write_unit("stack.target", "[Unit]\n")
        daemon.write_unit("web.service", http_unit(port))
        daemon.start()
        try:
            daemon.wait_state("web", "running", health="healthy")
            assert daemon.ctl("stop", "web").returncode == 0
            filler = fill_disk(daemon.state_dir)
            assert daemon.ctl("start", "web").returncode == 0
            running = daemon.wait_state("web", "running", health="healthy", timeout=30)
            assert any(e.get("event") == "records_not_saved" for e in daemon.events())
            assert daemon.client.get("/ping")["pid"] == daemon.proc.pid  # type: ignore[union-attr]

            filler.unlink()

            def recorded() -> bool:
                records = json.loads((daemon.state_dir / "instances.json").read_text())
                return records.get("web.service", {}).get("pid") == running["pid"]

            wait_for(recorded, 30, "the record, once there is space again")
            assert any(e.get("event") == "records_saved_again" for e in daemon.events())
            assert_one_process_per_unit(daemon, {"web.service": {running["pid"]}})
        finally:
            daemon.stop()
