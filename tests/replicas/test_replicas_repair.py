"""Replicas share one model directory: two of them repairing it at once (both crashed on the same
damaged file) must not write it at the same time. Real files, the real repair engine and store,
two real threads, as the daemon runs the ``repair_unit`` hook (a worker thread per unit)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from llm_supervisor.model_server.weights.manifest import verify_model_dir
from llm_supervisor.plugins.builtin.model_repair import ModelRepairPlugin
from llm_supervisor.plugins.types import Diagnosis
from llm_supervisor.repair.store import Store
from llm_supervisor.units.model import Unit
from tests.model_fixtures import build_tiny_model

WEIGHTS = "model.safetensors"


def replica(name: str, env: dict[str, str]) -> Unit:
    return Unit(name=name, path=Path("/units/model-service.service"), kind="service",
                exec_start=[sys.executable, "-m", "llm_supervisor.model_server"],
                environment=env)


def test_replicas_repair_the_shared_model_dir_one_after_the_other(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    store = tmp_path / "store"
    assert Store(store).fill(model)
    with open(model / WEIGHTS, "r+b") as fh:  # bytes flipped inside the tensor data
        fh.seek(model.joinpath(WEIGHTS).stat().st_size // 2)
        fh.write(os.urandom(64))
    assert verify_model_dir(model) != []
    env = {"MODEL_PATH": str(model), "MODEL_REPAIR_STORE": str(store),
           "STATE_DIR": str(tmp_path / "state"), "HF_HUB_OFFLINE": "1"}
    plugin = ModelRepairPlugin()
    spans: dict[str, list[float]] = {}
    results = {}
    start = threading.Barrier(2)

    def repair(name: str) -> None:
        def progress(fraction: float, message: str = "") -> None:
            spans.setdefault(name, [time.monotonic()])

        start.wait()
        results[name] = plugin.repair_unit(
            unit=replica(name, env), diagnosis=Diagnosis("manual", "by hand"), progress=progress)
        spans.setdefault(name, [time.monotonic()]).append(time.monotonic())

    threads = [threading.Thread(target=repair, args=(n,))
               for n in ("model-service.service", "model-service@2.service")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r is not None and r.ok for r in results.values()), results
    assert verify_model_dir(model) == []
    (a_start, a_end), (b_start, b_end) = spans.values()
    assert a_end <= b_start or b_end <= a_start, f"repairs overlapped: {spans}"
