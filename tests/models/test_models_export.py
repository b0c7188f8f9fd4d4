"""Export with a model catalog: every model of the user's catalog becomes its own always-on
Deployment next to the model service (the shipped offline examples are not exported), and the
output says that scale-to-zero needs an autoscaler there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR


def test_each_catalog_model_is_its_own_deployment(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(PROJECT_DIR / "units" / "model-service.service", units)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "tiny.model").write_text("[Model]\nSource=offline\nSlots=2\n")
    env = {**os.environ, "MODELS_DIR": str(catalog), "LLM_SUPERVISOR_STATE_DIR":
           str(tmp_path / "state"), "MODEL_SERVICE_PORT": "5000"}
    out = tmp_path / "k8s"
    result = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "export",
                             "kubernetes", "-o", str(out), "--units-dir", str(units)],
                            env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR)
    assert result.returncode == 0, result.stderr
    files = {p.name for p in out.iterdir()}
    assert {"model-service.yaml", "model-tiny.yaml"} <= files
    assert "model-smollm2-q8.yaml" not in files  # shipped examples stay local
    tiny = (out / "model-tiny.yaml").read_text()
    assert "kind: Deployment" in tiny and "replicas: 1" in tiny
    assert "MAX_BATCH_SIZE" in tiny and "port: 5100" in tiny  # MODEL_SERVICE_PORT + 100
    assert "scale-to-zero there needs an autoscaler" in result.stdout
