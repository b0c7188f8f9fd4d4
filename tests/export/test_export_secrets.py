"""Export keeps secrets and the gateway in (issue 18, item 10), through the real
``llm-supervisorctl export`` and, where installed, ``docker stack config``:

- ``Environment=`` values of keys that look secret (or all values, ``--secret-env all``) are not
  in any manifest: Kubernetes reads them from a ``Secret`` (``secretKeyRef``) in a 0600 file,
  Compose and Swarm from a 0600 ``env_file``;
- compose.yaml publishes the gateway on 127.0.0.1 unless ``--gateway-host`` says otherwise, and
  gives every service ``no-new-privileges`` (as the local docker runtime does).
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import yaml

from tests.export.export_helpers import (
    export_env,
    exported_ok,
    find,
    load_resources,
    write_units,
)
from tests.export.test_export_compose import docker_stack_config

TOKEN = "hf_never_in_a_manifest_123"
PASSWORD = "pw-never-in-a-manifest"
UNITS = {
    "stack.target": "[Unit]\nWants=api.service\n",
    "api.service": f"""[Service]
Runtime=docker
Environment=HF_TOKEN={TOKEN} DB_PASSWORD={PASSWORD} MODEL_ID=plain-model
[Container]
Image=example/api:1
Ports=127.0.0.1:15000:5000
[Route]
PathPrefix=/api
Upstream=http://127.0.0.1:15000
""",
}


def _files_holding(out: Path, value: str) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_file() and value in p.read_text()}


def test_kubernetes_reads_secret_looking_values_from_a_secret(tmp_path: Path) -> None:
    units = write_units(tmp_path / "units", UNITS)
    out = tmp_path / "k8s"
    exported_ok("kubernetes", out, units_dir=units, env=export_env(tmp_path))
    assert _files_holding(out, TOKEN) == _files_holding(out, PASSWORD) == {"api-secret.yaml"}
    assert stat.S_IMODE((out / "api-secret.yaml").stat().st_mode) == 0o600
    resources = load_resources(out)
    secret = find(resources, "Secret", "api-environment")
    assert secret["stringData"] == {"DB_PASSWORD": PASSWORD, "HF_TOKEN": TOKEN}
    env = find(resources, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MODEL_ID", "value": "plain-model"} in env
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "api-environment", "key": "HF_TOKEN"}}} in env


def test_compose_reads_them_from_a_private_env_file_and_keeps_the_gateway_local(
        tmp_path: Path) -> None:
    units = write_units(tmp_path / "units", UNITS)
    out = tmp_path / "compose"
    exported_ok("compose", out, units_dir=units, env=export_env(tmp_path))
    assert _files_holding(out, TOKEN) == {"api.secret.env"}
    assert stat.S_IMODE((out / "api.secret.env").stat().st_mode) == 0o600
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    api = compose["services"]["api"]
    assert api["environment"] == {"MODEL_ID": "plain-model"}
    assert api["env_file"] == ["./api.secret.env"]
    assert all(s["security_opt"] == ["no-new-privileges:true"]
               for s in compose["services"].values())
    assert compose["services"]["gateway"]["ports"][0]["host_ip"] == "127.0.0.1"
    stack = yaml.safe_load((out / "stack.yaml").read_text())
    assert stack["services"]["api"]["env_file"] == ["./api.secret.env"]
    if shutil.which("docker") is not None:  # docker stack reads the env file at deploy time
        resolved = docker_stack_config(out / "stack.yaml")
        assert resolved.returncode == 0, resolved.stderr
        assert f"HF_TOKEN: {TOKEN}" in resolved.stdout

    opened = tmp_path / "opened"
    exported_ok("compose", opened, "--gateway-host", "0.0.0.0", "--secret-env", "all",
                units_dir=units, env=export_env(tmp_path))
    compose = yaml.safe_load((opened / "compose.yaml").read_text())
    assert compose["services"]["gateway"]["ports"][0]["host_ip"] == "0.0.0.0"
    assert "environment" not in compose["services"]["api"]
    assert "MODEL_ID=plain-model" in (opened / "api.secret.env").read_text()
