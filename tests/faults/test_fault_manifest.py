"""Fault: a compromised model-service container crafts the model directory (manifest entries with
absolute and ``..`` names or a non-hex digest, a symlinked manifest, files and directories
symlinked to a sentinel tree elsewhere). The real daemon, as root when the suite runs as root,
detects the failing service, runs the model repair and restarts it.

Whatever happens, the sentinel tree outside the model directory is byte-for-byte, mode, owner,
mtime and ctime unchanged; and the repair either heals the model directory (no links left, every
file matching the manifest, the service up) or fails the unit with a reason naming what was
refused. The model service is a stand-in (see fault_manifest_helpers.py); the daemon, the
plugin, the repair and the store are the real ones.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from llm_supervisor.model_server.weights.manifest import verify_model_dir
from llm_supervisor.repair.store import Store
from tests.daemon_harness import Daemon, wait_for
from tests.faults.fault_manifest_helpers import (
    CASES,
    PAYLOAD,
    Case,
    build_model,
    build_sentinel,
    snapshot,
    unit_text,
)

UNIT = "model-service"


def _events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == name]


def _outcome(daemon: Daemon) -> dict[str, Any] | None:
    """The unit once the repair is over: failed, or running again after a successful repair."""
    unit = daemon.unit(UNIT)
    if unit["state"] == "failed":
        return unit
    healed = any(e.get("ok") for e in _events(daemon, "model_repair_finished"))
    if healed and unit["state"] == "running" and unit["restarts"] >= 1:
        return unit
    return None


def _links(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_symlink()]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_crafted_model_dir_touches_nothing_outside(tmp_path: Path, case: Case) -> None:
    model = build_model(tmp_path / "models" / "crafted")
    store = Store(tmp_path / "store")
    assert store.fill(model)  # the reserve copy a healthy start leaves (real code)
    bait = store.blob(hashlib.sha256(PAYLOAD).hexdigest())
    bait.write_bytes(PAYLOAD)  # a source that would happily provide the "victim" file
    sentinel = build_sentinel(tmp_path / "sentinel", model)
    case.craft(model, sentinel)
    before = snapshot(sentinel)

    daemon = Daemon(tmp_path / "daemon")
    daemon.write_unit("stack.target", "[Unit]\nDescription=fault test stack\n")
    daemon.write_unit(f"{UNIT}.service", unit_text(model, store.root, tmp_path / "hf"))
    daemon.start()
    try:
        unit = wait_for(lambda: _outcome(daemon), 90, f"the repair of {case.name} to end",
                        interval=0.2, diagnostics=daemon.log_tail)
        assert _events(daemon, "model_damage_detected"), daemon.log_tail()
        assert snapshot(sentinel) == before, "the repair touched the sentinel tree"
        if case.heals:
            assert unit["state"] == "running", unit
            assert verify_model_dir(model) == []
            assert _links(model) == ([str(model / ".cache")] if case.name == "everything-at-once"
                                     else [])
            replaced = {e["file"] for e in _events(daemon, "model_repair_file_replaced")}
            assert replaced and all(e["source"] == "repair store"
                                    for e in _events(daemon, "model_repair_file_replaced"))
        else:
            assert unit["state"] == "failed", unit
            assert unit["reason"].startswith("repair gave up"), unit["reason"]
            assert case.reason in unit["reason"], unit["reason"]
            assert "manifest unusable" in unit["reason"], unit["reason"]
            assert not _events(daemon, "model_repair_file_replaced")
        assert os.path.exists(daemon.socket)  # the daemon keeps serving
    finally:
        daemon.stop()
