"""The daemon with real processes, real sockets and real HTTP health checks."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import psutil

from tests.daemon_harness import Daemon, free_port, wait_for
from tests.supervisor.unit_texts import http_unit


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_socket_is_private_and_status_json_has_the_contract_fields(daemon: Daemon):
    port = free_port()
    daemon.write_unit("web.service", http_unit(port))
    daemon.start()
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.state_dir).st_mode) == 0o700
    daemon.wait_state("web", "running", health="healthy")
    result = daemon.ctl("status", "--json")
    assert result.returncode == 0, result.stderr
    import json

    (web,) = json.loads(result.stdout)
    for key in ("name", "state", "health", "pid", "restarts", "since", "last_exit", "reason"):
        assert key in web
    assert web["name"] == "web" and web["state"] == "running" and web["health"] == "healthy"
    human = daemon.ctl("status")
    assert "web" in human.stdout and "running" in human.stdout


def test_kill_9_unit_is_restarted_and_healthy_again(daemon: Daemon):
    port = free_port()
    daemon.write_unit("web.service", http_unit(port))
    daemon.start()
    first = daemon.wait_state("web", "running", health="healthy")
    os.kill(first["pid"], signal.SIGKILL)
    again = wait_for(lambda: (u := daemon.unit("web"))["restarts"] >= 1 and u["state"] == "running"
                     and u["health"] == "healthy" and u, 15, "restart after SIGKILL")
    assert again["pid"] != first["pid"]
    assert again["last_exit"]["signal"] == signal.SIGKILL
    import httpx

    assert httpx.get(f"http://127.0.0.1:{port}/").text == "ok"


def test_crash_loop_ends_failed_with_reason_and_start_clears_it(daemon: Daemon, tmp_path: Path):
    stamps = tmp_path / "starts"
    daemon.write_unit("crash.service", f"""[Service]
ExecStart=/bin/sh -c 'date +%%s.%%N >> {stamps}; exit 3'
RestartSec=0.05
RestartMaxDelaySec=0.2
StartLimitBurst=4
StartLimitIntervalSec=30
[Install]
WantedBy=stack.target
""")
    daemon.start()
    unit = daemon.wait_state("crash", "failed", timeout=20)
    assert "start limit hit" in unit["reason"] and "4 starts" in unit["reason"]
    assert unit["last_exit"]["code"] == 3
    starts = stamps.read_text().split()
    assert len(starts) == 4
    time.sleep(1.0)  # no busy loop: still failed, no more starts
    assert len(stamps.read_text().split()) == 4
    assert daemon.unit("crash")["state"] == "failed"
    # Backoff grew: the gap before the last start is larger than before the second.
    times = [float(t) for t in starts]
    assert times[3] - times[2] > times[1] - times[0]
    result = daemon.ctl("start", "crash")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(stamps.read_text().split()) > 4, 10, "a new start after `start`")


def test_health_failing_after_start_restarts_the_unit(daemon: Daemon, tmp_path: Path):
    port = free_port()
    fail = tmp_path / "fail"
    daemon.write_unit("web.service", http_unit(port, "--fail-file", str(fail)))
    daemon.start()
    first = daemon.wait_state("web", "running", health="healthy")
    fail.touch()
    wait_for(lambda: daemon.unit("web")["restarts"] >= 1, 15, "restart after failing checks")
    fail.unlink()
    again = daemon.wait_state("web", "running", health="healthy", timeout=15)
    assert again["pid"] != first["pid"]
    events = [e for e in daemon.events() if e.get("event") == "unit_state_changed"
              and e.get("to") == "stopping"]
    assert any("unhealthy: 2 failed checks" in e["reason"] for e in events)


def test_after_ordering_waits_for_healthy(daemon: Daemon, tmp_path: Path):
    stamps = tmp_path / "stamps"
    port_a, port_b = free_port(), free_port()
    # a is slow to become healthy: it sleeps before serving.
    slow = http_unit(port_a, "--stamp-file", str(stamps)).replace(
        "ExecStart=", "ExecStartPre=/bin/sleep 1\nExecStart=")
    daemon.write_unit("a.service", slow)
    daemon.write_unit("b.service", http_unit(port_b, "--stamp-file", str(stamps),
                                             unit_extra="After=a.service\nRequires=a.service"))
    daemon.start()
    daemon.wait_state("b", "running", health="healthy", timeout=20)
    events = [e for e in daemon.events() if e.get("event") == "unit_state_changed"]
    a_running = next(e["timestamp"] for e in events if e["unit"] == "a.service"
                     and e["to"] == "running")
    b_started = [e["timestamp"] for e in events if e["unit"] == "b.service" and e["to"] == "running"]
    assert b_started and b_started[0] > a_running
    pids_in_order = [line.split()[1] for line in stamps.read_text().splitlines()]
    assert pids_in_order == [str(daemon.unit("a")["pid"]), str(daemon.unit("b")["pid"])]
    # Stop in reverse order: b stops before a.
    daemon.ctl("stop", "a", check=True)
    events = [e for e in daemon.events() if e.get("event") == "unit_state_changed"
              and e.get("to") == "inactive"]
    assert [e["unit"] for e in events][-2:] == ["b.service", "a.service"]


def test_required_unit_failing_fails_the_dependent(daemon: Daemon):
    daemon.write_unit("broken.service", "[Service]\nExecStart=/bin/false\nRestart=no\n"
                      "[Install]\nWantedBy=stack.target\n")
    daemon.write_unit("app.service", "[Unit]\nAfter=broken.service\nRequires=broken.service\n"
                      "[Service]\nExecStart=/bin/sleep 60\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    unit = daemon.wait_state("app", "failed")
    assert "required unit broken is failed" in unit["reason"]


def test_stop_kills_the_whole_group_and_escalates_to_sigkill(daemon: Daemon):
    port = free_port()
    daemon.write_unit("stubborn.service", http_unit(
        port, "--grandchild", "--ignore-term", service_extra="TimeoutStopSec=1"))
    daemon.start()
    unit = daemon.wait_state("stubborn", "running", health="healthy")
    grandchild = wait_for(lambda: [c.pid for c in psutil.Process(unit["pid"]).children()],
                          10, "grandchild")[0]
    started = time.monotonic()
    result = daemon.ctl("stop", "stubborn")
    assert result.returncode == 0, result.stderr
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 6, elapsed
    assert not alive(unit["pid"]) and not alive(grandchild)
    assert daemon.unit("stubborn")["state"] == "inactive"
    assert "SIGKILL" in daemon.ctl("logs", "stubborn").stdout


def test_daemon_sigkill_then_restart_leaves_no_orphans(daemon: Daemon):
    port = free_port()
    daemon.write_unit("web.service", http_unit(port, "--grandchild"))
    daemon.start()
    unit = daemon.wait_state("web", "running", health="healthy")
    grandchild = wait_for(lambda: [c.pid for c in psutil.Process(unit["pid"]).children()],
                          10, "grandchild")[0]
    daemon.kill9()
    daemon.start()
    again = daemon.wait_state("web", "running", health="healthy", timeout=20)
    assert again["pid"] != unit["pid"]
    wait_for(lambda: not alive(unit["pid"]) and not alive(grandchild), 10, "orphans gone")
    # Exactly one program answers on the port: the new one.
    serving = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and str(port) in p.info["cmdline"]]
    assert [p.pid for p in serving] == [again["pid"]]


def test_reload_restarts_only_the_changed_unit(daemon: Daemon):
    port_a, port_b = free_port(), free_port()
    daemon.write_unit("a.service", http_unit(port_a))
    daemon.write_unit("b.service", http_unit(port_b))
    daemon.start()
    a = daemon.wait_state("a", "running", health="healthy")
    b = daemon.wait_state("b", "running", health="healthy")
    daemon.write_unit("b.service", http_unit(port_b).replace("tiny http", "tiny http v2"))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "v2" in daemon.unit("b")["description"], 10, "b reloaded")
    b2 = daemon.wait_state("b", "running", health="healthy")
    assert b2["pid"] != b["pid"]
    assert daemon.unit("a")["pid"] == a["pid"]
    # `reload` over the socket with a broken file: error reported, the old unit keeps running.
    daemon.write_unit("a.service", "[Service]\nRestart=bogus\n")
    result = daemon.ctl("reload")
    assert result.returncode == 1 and "a.service:2: [Service] Restart:" in result.stderr
    assert daemon.unit("a")["pid"] == a["pid"]


def test_bad_unit_file_is_reported_and_the_daemon_keeps_serving(daemon: Daemon):
    port = free_port()
    daemon.write_unit("web.service", http_unit(port))
    daemon.write_unit("bad.service", "[Service]\nExecStart=/bin/true\n[Bogus]\nA=1\n")
    daemon.start()
    daemon.wait_state("web", "running", health="healthy")
    errors = daemon.client.get("/errors")
    assert errors[0]["file"].endswith("bad.service") and errors[0]["line"] == 3
    assert "unknown section [Bogus]" in daemon.ctl("status").stderr


def test_condition_unmet_is_skipped_with_reason(daemon: Daemon):
    daemon.write_unit("gui.service", "[Unit]\nConditionExecutable=no-such-program-xyz\n"
                      "InstallHint=install with: apt-get install xyz\n"
                      "[Service]\nExecStart=no-such-program-xyz\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    unit = daemon.wait_state("gui", "skipped")
    assert "no-such-program-xyz not found" in unit["reason"] and "apt-get install xyz" in unit["reason"]


def test_logs_metrics_and_events(daemon: Daemon):
    port = free_port()
    daemon.write_unit("web.service", http_unit(port))
    daemon.start()
    daemon.wait_state("web", "running", health="healthy")
    assert f"listening on {port}" in daemon.ctl("logs", "web", "-n", "20").stdout
    metrics = daemon.client.request("GET", "/metrics").text
    assert 'llm_supervisor_unit_state{state="running",unit="web.service"} 1.0' in metrics
    assert 'llm_supervisor_health_check_seconds_count{result="pass",unit="web.service"}' in metrics
    transitions = [e for e in daemon.events() if e.get("event") == "unit_state_changed"]
    assert {"unit", "from", "to", "reason"} <= set(transitions[0])
    plugins = daemon.client.get("/plugins")
    assert any(p["name"].endswith("event_log") and "unit_state_changed" in p["hooks"]
               for p in plugins)


def test_unknown_unit_is_a_clear_404(daemon: Daemon):
    daemon.start()
    result = daemon.ctl("start", "nope")
    assert result.returncode == 1 and "no such unit: nope" in result.stderr


def test_condition_is_checked_before_dependencies_and_skips_propagate(daemon: Daemon):
    daemon.write_unit("xserver.service", "[Unit]\nConditionExecutable=no-such-xserver\n"
                      "[Service]\nExecStart=no-such-xserver\n[Install]\nWantedBy=stack.target\n")
    daemon.write_unit("viewer.service", "[Unit]\nAfter=xserver.service\nRequires=xserver.service\n"
                      "ConditionExecutable=no-such-viewer\nInstallHint=apt-get install viewer\n"
                      "[Service]\nExecStart=no-such-viewer\n[Install]\nWantedBy=stack.target\n")
    daemon.write_unit("client.service", "[Unit]\nAfter=xserver.service\nRequires=xserver.service\n"
                      "[Service]\nExecStart=/bin/sleep 60\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    viewer = daemon.wait_state("viewer", "skipped")
    assert "no-such-viewer not found" in viewer["reason"] and "apt-get install viewer" in viewer["reason"]
    client = daemon.wait_state("client", "skipped")
    assert client["reason"] == "required unit xserver is skipped"


def test_failing_checks_during_start_period_do_not_count(daemon: Daemon):
    port = free_port()
    # Listens only after 1.5 s; with Retries=1 and a 0.2 s interval, any counted failure would
    # restart it. StartPeriod=10 keeps those early failures from counting.
    unit = http_unit(port).replace("ExecStart=", "ExecStart=/bin/sh -c 'sleep 1.5; exec \"$0\" \"$@\"' ")
    unit = unit.replace("Interval=0.3\nTimeout=1\nRetries=2\n",
                        "Interval=0.2\nTimeout=0.5\nRetries=1\nStartPeriod=10\n")
    daemon.write_unit("slow.service", unit)
    daemon.start()
    during = wait_for(lambda: (u := daemon.unit("slow"))["health_detail"] and u, 10,
                      "a failed check during the start period")
    assert during["state"] == "starting" and during["health"] == "unknown"
    ready = daemon.wait_state("slow", "running", health="healthy", timeout=15)
    assert ready["restarts"] == 0 and ready["pid"] == during["pid"]


def test_dependency_cycle_fails_only_its_units(daemon: Daemon):
    # a pulls b in (Wants=), so starting a alone meets the cycle too.
    for name, after in (("a", "b\nWants=b"), ("b", "a"), ("c", "")):
        daemon.write_unit(f"{name}.service", f"[Unit]\nAfter={after}\n[Service]\n"
                          "ExecStart=/bin/sleep 60\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    daemon.wait_state("c", "running")
    for name in ("a", "b"):
        unit = daemon.wait_state(name, "failed")
        assert unit["reason"].startswith("dependency cycle: ") and "→" in unit["reason"]
    assert any("dependency cycle" in e["message"] for e in daemon.client.get("/errors"))
    result = daemon.ctl("start", "a")
    assert result.returncode == 1 and "dependency cycle" in result.stderr
    failed = [e for e in daemon.events() if e.get("event") == "unit_state_changed"
              and e.get("to") == "failed"]
    assert {e["unit"] for e in failed} == {"a.service", "b.service"}
