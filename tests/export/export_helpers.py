"""Running ``llm-supervisorctl export`` as a user would (a subprocess, no daemon) and reading
what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_UNITS = REPO_ROOT / "units"


def export_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without our settings, a config file that does not exist and a
    state dir of the test's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LLM_SUPERVISOR_") and k not in (
               "MODEL_PATH", "MODEL_REPLICAS", "MODEL_ID", "GATEWAY_PORT", "MODEL_SERVICE_PORT")}
    env.update({"LLM_SUPERVISOR_CONFIG": str(tmp_path / "no-config.toml"),
                "LLM_SUPERVISOR_STATE_DIR": str(tmp_path / "state"), **extra})
    return env


def run_export(engine: str, out: Path, *args: str, units_dir: Path = SHIPPED_UNITS,
               env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_supervisor.cli.ctl", "export", engine, "-o", str(out),
         "--units-dir", str(units_dir), *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=out.parent)


def exported_ok(engine: str, out: Path, *args: str, units_dir: Path = SHIPPED_UNITS,
                env: dict[str, str]) -> str:
    result = run_export(engine, out, *args, units_dir=units_dir, env=env)
    assert result.returncode == 0, f"export failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def load_resources(out: Path) -> list[dict[str, Any]]:
    """Every resource of every YAML file in ``out``."""
    resources: list[dict[str, Any]] = []
    for path in sorted(out.glob("*.yaml")):
        resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return resources


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, got {[r['kind'] for r in resources]}"
    return matches[0]


def all_text(out: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(out.iterdir()) if path.is_file())
