"""End to end: the real daemon supervises the real model server on the tiny model; we damage the
model's files while it runs, kill or restart the service, and it must come back healthy with
nobody touching it. Repairs fetch from a local fake hub (HF_ENDPOINT); no internet.

As root the server runs under ``setpriv`` without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so that
``chmod 000`` really makes the weights unreadable to it (as for a non-root service user).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.model_server.weights.manifest import sha256_file, verify_model_dir
from llm_supervisor.repair import perms
from tests.daemon_harness import Daemon, free_port, wait_for
from tests.model_fixtures import FakeHub, build_tiny_model
from tests.repair.repair_helpers import DAMAGE, WEIGHTS, hub_copy, truncate

UNIT = "model-service"


def _wrapper() -> str:
    if os.geteuid() != 0:
        return ""
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: chmod 000 cannot be tested")
    return "setpriv --bounding-set -dac_override,-dac_read_search -- "


def model_service_unit(extra_env: str = "") -> str:
    return f"""[Unit]
Description=model service under test
[Service]
ExecStart={_wrapper()}${{PYTHON}} -m llm_supervisor.model_server
Environment=USE_INT8=false DTYPE=float32 VERIFY_MODEL=sha256 LOG_FORMAT=json HOST=127.0.0.1
Environment=TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 {extra_env}
Restart=on-failure
RestartSec=0.3
RestartMaxDelaySec=2
TimeoutStopSec=10
[Health]
Check=http://127.0.0.1:${{MODEL_SERVICE_PORT}}/api/health
Interval=0.3
Timeout=2
Retries=3
StartPeriod=120
[Install]
WantedBy=stack.target
"""


def start_stack(root: Path, hub: FakeHub, extra_env: str = "") -> tuple[Daemon, Path]:
    model = build_tiny_model(root / "model")
    env = {"MODEL_PATH": str(model), "MODEL_SERVICE_PORT": str(free_port()),
           "MODEL_ID": "test/tiny-llama", "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(root / "hf-home")}
    daemon = Daemon(root / "daemon", env=env)
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit(f"{UNIT}.service", model_service_unit(extra_env))
    daemon.start()
    daemon.wait_state(UNIT, "running", health="healthy", timeout=120)
    return daemon, model


def events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == name]


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[FakeHub]:
    repo = hub_copy(tiny_model_dir, tmp_path_factory.mktemp("hub") / "repo")
    server = FakeHub({"test/tiny-llama": repo})
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[tuple[Daemon, Path]]:
    daemon, model = start_stack(tmp_path_factory.mktemp("stack"), hub)
    yield daemon, model
    daemon.stop()


# damage, how the service is made to notice it
ROUNDS = [("truncated", "kill"), ("deleted", "restart"), ("bytes-flipped", "kill"),
          ("chmod-000", "restart"), ("config-deleted", "kill")]


@pytest.mark.parametrize(("damage", "trigger"), ROUNDS, ids=[r[0] for r in ROUNDS])
def test_damaged_model_heals_without_human_action(stack: tuple[Daemon, Path], damage: str,
                                                  trigger: str) -> None:
    daemon, model = stack
    before = daemon.wait_state(UNIT, "running", health="healthy", timeout=60)
    repaired_before = len(events(daemon, "model_repair_finished"))
    file = DAMAGE[damage](model)
    if trigger == "kill":
        os.kill(before["pid"], signal.SIGKILL)
    else:
        daemon.client.post(f"/units/{UNIT}/restart")

    def healed() -> dict[str, Any] | None:
        unit = daemon.unit(UNIT)
        done = len(events(daemon, "model_repair_finished")) > repaired_before
        ok = unit["state"] == "running" and unit["health"] == "healthy"
        return unit if done and ok and unit["pid"] != before["pid"] else None

    after = wait_for(healed, 90, f"{UNIT} healthy again after {damage}", interval=0.1)
    assert after["reason"] == "healthy"

    # The repaired files match the manifest, and the server can read them.
    assert verify_model_dir(model) == []
    assert perms.unreadable_reason(model / file) is None
    port = daemon.env["MODEL_SERVICE_PORT"]
    assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200

    # The repair is in the daemon's log: detected, repairing, the file fixed, finished ok.
    finished = events(daemon, "model_repair_finished")[repaired_before:]
    assert finished[-1]["ok"] is True and file in finished[-1]["message"]
    detected = events(daemon, "model_damage_detected")[-1]
    assert detected["unit"] == UNIT
    fixed = [e for e in daemon.events() if e.get("event") in ("model_repair_file_replaced",
                                                              "model_repair_mode_fixed")]
    assert any(file in (e.get("file") or e.get("change") or "") for e in fixed)
    assert any(e.get("to") == "repairing" and ts(e) >= ts(detected)
               for e in events(daemon, "unit_state_changed"))
    # Detected within one second of the exit.
    exits = [e for e in events(daemon, "unit_exited") if ts(e) <= ts(detected)]
    assert ts(detected) - ts(exits[-1]) < 1.0


def test_repair_by_hand_and_verify_only(stack: tuple[Daemon, Path]) -> None:
    daemon, model = stack
    daemon.wait_state(UNIT, "running", health="healthy", timeout=60)
    check = daemon.ctl("repair", UNIT, "--verify-only")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "files match the manifest" in check.stdout

    truncate(model)  # the running server does not notice: it loaded the weights already
    damaged = sha256_file(model / WEIGHTS)
    check = daemon.ctl("repair", UNIT, "--verify-only")
    assert check.returncode == 1
    assert f"{WEIGHTS}: truncated" in check.stdout
    assert sha256_file(model / WEIGHTS) == damaged  # verify-only changes nothing
    assert daemon.unit(UNIT)["state"] == "running"

    fixed = daemon.ctl("repair", UNIT)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"replaced {WEIGHTS} (from the hub)" in fixed.stdout
    daemon.wait_state(UNIT, "running", health="healthy", timeout=60)
    assert verify_model_dir(model) == []


def test_plugin_is_listed(stack: tuple[Daemon, Path]) -> None:
    daemon, _ = stack
    listing = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                              str(daemon.socket), "plugins"], env={**daemon.env, "COLUMNS": "200"},
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "llm_supervisor.plugins.builtin.model_repair" in listing.stdout
    (plugin,) = [p for p in daemon.client.get("/plugins") if p["name"].endswith("model_repair")]
    assert {"diagnose_failure", "repair_unit", "unit_health_changed"} <= set(plugin["hooks"])


def test_broken_source_fails_with_a_clear_reason(tmp_path: Path, hub: FakeHub) -> None:
    """The hub serves wrong bytes and there is no cache: after the budget the unit is failed,
    with a reason saying what to do; the daemon keeps serving; the damaged file is kept."""
    daemon, model = start_stack(tmp_path, hub, "MODEL_REPAIR_ATTEMPTS=2 MODEL_REPAIR_STORE=off")
    try:
        pid = daemon.unit(UNIT)["pid"]
        truncate(model)
        damaged = sha256_file(model / WEIGHTS)
        hub.corrupt.add(WEIGHTS)
        os.kill(pid, signal.SIGKILL)
        failed = daemon.wait_state(UNIT, "failed", timeout=90)
        reason = failed["reason"]
        assert reason.startswith("repair gave up: 2 repair attempt(s) in a row"), reason
        assert "sha256" in reason and f"llm-supervisorctl repair {UNIT}" in reason
        assert len(events(daemon, "model_repair_finished")) == 2
        assert events(daemon, "model_repair_gave_up")
        status = daemon.ctl("status", "--json")
        assert status.returncode == 0 and '"failed"' in status.stdout
        assert sha256_file(model / WEIGHTS) == damaged

        # Once the source is fixed, the documented command brings it back.
        hub.corrupt.clear()
        fixed = daemon.ctl("repair", UNIT)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        daemon.wait_state(UNIT, "running", health="healthy", timeout=60)
        assert verify_model_dir(model) == []
    finally:
        hub.corrupt.clear()
        daemon.stop()


def test_offline_repair_from_the_store(tmp_path: Path, hub: FakeHub) -> None:
    """No hub, no cache: the reserve copy taken after the first healthy start repairs it."""
    daemon, model = start_stack(tmp_path, hub, "HF_HUB_OFFLINE=1")
    try:
        wait_for(lambda: events(daemon, "model_repair_store_filled"), 30, "the store filled")
        unit = daemon.unit(UNIT)
        DAMAGE["bytes-flipped"](model)
        (model / "config.json").unlink()
        os.kill(unit["pid"], signal.SIGKILL)
        wait_for(lambda: (u := daemon.unit(UNIT))["state"] == "running"
                 and u["health"] == "healthy" and u["pid"] != unit["pid"], 90, "healed")
        assert verify_model_dir(model) == []
        replaced = {e["file"]: e["source"] for e in events(daemon, "model_repair_file_replaced")}
        assert replaced == {WEIGHTS: "repair store", "config.json": "repair store"}
    finally:
        daemon.stop()
