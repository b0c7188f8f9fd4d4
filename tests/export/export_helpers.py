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


SECRET_VALUE = "s3cr3t-never-exported"
# A stack that uses every key the export maps (the web unit's EnvironmentFile= comes from
# [vars] SECRETS_FILE).
TABLE_UNITS = {
    "stack.target": """[Unit]
Description=table stack
Wants=model-service.service web.service probe.service local.service worker@1.service worker@2.service
""",
    "model-service.service": """[Unit]
Description=model
[Service]
Environment=MODEL_SERVICE_PORT=5000
TimeoutStartSec=300
[Health]
Check=http://127.0.0.1:15000/api/health?deep=1
Interval=2
Timeout=0.5
Retries=4
StartPeriod=120
[Container]
Build=.
Dockerfile=packaging/docker/model-service/Dockerfile
Ports=127.0.0.1:15000:5000
Volumes=${MODEL_PATH}:/app/models/model:ro
GPUs=2
Memory=2g
CPUs=1.5
[Route]
PathPrefix=/api
Upstream=http://127.0.0.1:15000
""",
    "web.service": """[Unit]
After=model-service.service
Requires=model-service.service
[Service]
Runtime=docker
EnvironmentFile=${SECRETS_FILE}
Environment=PLAIN=visible
Restart=always
TimeoutStopSec=7
AmbientCapabilities=CAP_NET_BIND_SERVICE
[Health]
Check=tcp://127.0.0.1:18080
Interval=5
Retries=2
[Container]
Image=example/web:1
Ports=18080:8080
Volumes=webdata:/data
User=1000:2000
[Route]
PathPrefix=/web
""",
    "probe.service": """[Service]
Runtime=docker
Restart=no
[Health]
Check=exec:test -f /tmp/ready
[Container]
Image=example/probe:1
Command=sleep infinity
GPUs=all
""",
    "local.service": """[Service]
ExecStart=/bin/true
""",
    "worker@.service": """[Service]
Runtime=docker
[Container]
Image=example/worker:1
Command=work %i
Ports=9000
""",
}


def write_units(directory: Path, units: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (directory / name).write_text(text)
    return directory
