"""Process-runtime hardening (issue 9): orphan clean-up that cannot hit strangers, records that
survive crashes and corruption, exec probes that leave nothing behind, no Python between fork
and exec, and units that do not inherit the daemon's secrets. Real processes and daemons."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from llm_supervisor.core.fsutil import atomic_write_json, atomic_write_text
from llm_supervisor.runtimes.process.identity import OWNER_MARKER, UNIT_MARKER, boot_id, start_ticks
from llm_supervisor.supervisor.health import Prober
from llm_supervisor.units.model import HealthSpec
from tests.daemon_harness import Daemon, free_port, wait_for
from tests.supervisor.unit_texts import http_unit


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def owner(daemon: Daemon) -> str:
    return str(daemon.state_dir.resolve())


# ---------------------------------------------------------------------------- orphan clean-up
def start_sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A `sleep` in its own session (pid == pgid), like a unit's leader would be."""
    return subprocess.Popen(["sleep", "300"], env={"PATH": os.environ["PATH"], **env},
                            start_new_session=True, stdin=subprocess.DEVNULL)


def record_for(proc: subprocess.Popen[bytes], markers: dict[str, str], **overrides: Any
               ) -> dict[str, Any]:
    record = {"pid": proc.pid, "pgid": proc.pid, "start_ticks": start_ticks(proc.pid),
              "boot_id": boot_id(), "markers": markers, "ident": str(proc.pid),
              "runtime": "process", "started_at": 0}
    record.update(overrides)
    return record


# (case, marker in the sleeper's environment, record overrides, killed?)
ORPHAN_CASES = [
    ("unrelated program without our marker", False, {}, False),
    ("record from another boot", True, {"boot_id": "00000000-0000-0000-0000-000000000000"},
     False),
    ("old record without boot id", True, {"boot_id": None}, False),
    ("pid reused: leader start time differs", True, {"start_ticks": -1}, False),
    # The control case: with everything matching, the same crafted record IS acted on, so the
    # cases above survive because of the check they name, not because the record is malformed.
    ("ours: boot id, start time and markers match", True, {}, True),
]


@pytest.mark.parametrize(("case", "marked", "overrides", "killed"), ORPHAN_CASES,
                         ids=[c[0] for c in ORPHAN_CASES])
def test_recovery_signals_only_processes_proven_ours(daemon: Daemon, case: str, marked: bool,
                                                     overrides: dict[str, Any], killed: bool):
    daemon.write_unit("web.service", http_unit(free_port()))
    markers = {UNIT_MARKER: "web.service", OWNER_MARKER: owner(daemon)}
    sleeper = start_sleeper(markers if marked else {})
    try:
        wait_for(lambda: start_ticks(sleeper.pid) is not None, 5, "the sleeper")
        daemon.state_dir.mkdir(parents=True, exist_ok=True)
        (daemon.state_dir / "instances.json").write_text(json.dumps(
            {"web.service": record_for(sleeper, markers, **overrides)}))
        # Reap it as soon as it dies (in real life init does), so a killed sleeper is gone for
        # the daemon's wait at once rather than a zombie until our next poll().
        threading.Thread(target=sleeper.wait, daemon=True).start()
        daemon.start()  # answers only after recovery ran
        daemon.wait_state("web", "running", health="healthy")
        if killed:
            wait_for(lambda: sleeper.returncode is not None, 15, "our leftover to be cleaned up")
        else:
            assert sleeper.returncode is None and alive(sleeper.pid), \
                f"{case}: a process not proven ours was signalled"
            unit_log = daemon.ctl("logs", "web").stdout
            assert "nothing signalled" in unit_log or "left alone" in unit_log, unit_log
    finally:
        sleeper.kill()
        sleeper.wait(10)


def test_daemon_killed_units_get_sigterm_through_setpriv(daemon: Daemon):
    """PR_SET_PDEATHSIG without preexec_fn: the unit dies with the daemon, no restart needed."""
    daemon.write_unit("web.service", http_unit(free_port()))
    daemon.start()
    unit = daemon.wait_state("web", "running", health="healthy")
    assert "setpriv" not in " ".join(psutil.Process(unit["pid"]).cmdline())  # exec'd through
    daemon.kill9()
    wait_for(lambda: not alive(unit["pid"]), 15, "the unit to die with its daemon")


def test_without_setpriv_units_run_and_the_next_daemon_cleans_up(daemon: Daemon,
                                                                 tmp_path: Path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    daemon.env["PATH"] = str(empty)  # no setpriv; units name their program by absolute path
    daemon.write_unit("web.service", http_unit(free_port(), "--grandchild"))
    daemon.start()
    unit = daemon.wait_state("web", "running", health="healthy")
    assert any(e.get("event") == "no_pdeathsig" for e in daemon.events()), daemon.log_tail()
    grandchild = wait_for(lambda: [c.pid for c in psutil.Process(unit["pid"]).children()],
                          10, "grandchild")[0]
    daemon.kill9()
    assert alive(unit["pid"]), "without setpriv nothing should have signalled the unit"
    daemon.start()
    again = daemon.wait_state("web", "running", health="healthy", timeout=30)
    assert again["pid"] != unit["pid"]
    wait_for(lambda: not alive(unit["pid"]) and not alive(grandchild), 15, "leftovers gone")


# ---------------------------------------------------------------------------- records file
CORRUPT_RECORDS = [
    ("json list", b"[1, 2]"),
    ("json string", b'"text"'),
    ("json null", b"null"),
    ("truncated json", b'{"web.service": {"pid": 12'),
    ("binary garbage", b"\xff\xfe\x00garbage"),
]


@pytest.mark.parametrize(("case", "content"), CORRUPT_RECORDS, ids=[c[0] for c in CORRUPT_RECORDS])
def test_unusable_records_are_set_aside_and_the_daemon_starts(daemon: Daemon, case: str,
                                                              content: bytes):
    daemon.write_unit("web.service", http_unit(free_port()))
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    records = daemon.state_dir / "instances.json"
    records.write_bytes(content)
    daemon.start()
    unit = daemon.wait_state("web", "running", health="healthy")
    aside = list(daemon.state_dir.glob("instances.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content, aside
    assert any(e.get("event") == "records_unusable" for e in daemon.events()), daemon.log_tail()
    fresh = json.loads(records.read_text())
    assert fresh["web.service"]["pid"] == unit["pid"]
    assert stat.S_IMODE(records.stat().st_mode) == 0o600


def test_a_record_that_is_not_an_object_is_skipped_the_rest_is_used(daemon: Daemon):
    daemon.write_unit("web.service", http_unit(free_port()))
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    (daemon.state_dir / "instances.json").write_text('{"web.service": [1, 2]}')
    daemon.start()
    daemon.wait_state("web", "running", health="healthy")
    assert any(e.get("event") == "record_ignored" for e in daemon.events()), daemon.log_tail()


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"a": 1}, mode=0o600)
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        atomic_write_json(target, {"unserialisable": object()})
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    occupied = tmp_path / "a-directory"
    occupied.mkdir()
    (occupied / "inside").touch()
    with pytest.raises(OSError):
        atomic_write_text(occupied, "cannot replace a non-empty directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory", "state.json"]


# ---------------------------------------------------------------------------- exec probes
def test_timed_out_exec_probe_kills_its_whole_group():
    marker = f"{uuid.uuid4().int % 100000 + 100000}.5"  # a sleep length nobody else uses
    spec = HealthSpec(kind="exec", target=f"sh -c 'sleep {marker} & sleep {marker}'",
                      timeout=1.0)

    async def probe_once() -> Any:
        prober = Prober()
        try:
            # Bounded: before the fix the probe never returned (asyncio's wait() also waits for
            # the output pipe, which the surviving sleeps held open), so the health loop hung.
            return await asyncio.wait_for(prober.probe(spec), 20)
        finally:
            await prober.close()

    def sleepers() -> list[int]:
        return [p.pid for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] == ["sleep", marker] and alive(p.pid)]

    try:
        result = asyncio.run(probe_once())
        assert not result.ok and "timed out" in result.detail
        wait_for(lambda: not sleepers(), 5, "the probe's sleeps to be gone")
    finally:
        for pid in sleepers():
            psutil.Process(pid).kill()


# ---------------------------------------------------------------------------- environment
DUMP_ENV = """import json, os, sys
with open(sys.argv[1] + ".tmp", "w") as handle:
    json.dump(dict(os.environ), handle)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""


def test_units_get_the_allow_list_not_the_daemons_secrets(daemon: Daemon, tmp_path: Path):
    script = tmp_path / "dump_env.py"
    script.write_text(DUMP_ENV)
    out = tmp_path / "env.json"
    daemon.env.update({"SECRET_TOKEN": "x", "HF_TOKEN": "hf_secret", "HF_HOME": "/hf-home",
                       "DTYPE": "float32", "LLM_SUPERVISOR_PASS_ENV": "EXTRA_*, ONE_MORE",
                       "EXTRA_SETTING": "1", "ONE_MORE": "2"})
    daemon.write_unit("dump.service", f"""[Service]
ExecStart={sys.executable} {script} {out}
Environment=FROM_UNIT=yes API_TOKEN=given-to-this-unit
Restart=no
[Install]
WantedBy=stack.target
""")
    daemon.start()
    env = json.loads(wait_for(lambda: out.exists() and out.read_text(), 30, "the dump"))
    assert "SECRET_TOKEN" not in env and "HF_TOKEN" not in env
    assert env["HF_HOME"] == "/hf-home" and env["DTYPE"] == "float32"  # default list
    assert env["EXTRA_SETTING"] == "1" and env["ONE_MORE"] == "2"  # LLM_SUPERVISOR_PASS_ENV
    assert env["FROM_UNIT"] == "yes" and env["API_TOKEN"] == "given-to-this-unit"
    assert env["PATH"] == daemon.env["PATH"] and "MODEL_PATH" in env and "STATE_DIR" in env
    assert env[UNIT_MARKER] == "dump.service" and env[OWNER_MARKER] == owner(daemon)
