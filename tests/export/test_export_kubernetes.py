"""``llm-supervisorctl export kubernetes``: real CLI runs (no daemon) on the shipped units and on a
table of units, every resource validated strictly against the Kubernetes schemas that
kubernetes-validate ships (offline), for the oldest version we write for and the newest."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from llm_supervisor.export.kubernetes import KUBERNETES_VERSION
from tests.export.export_helpers import (
    SECRET_VALUE,
    TABLE_UNITS,
    all_text,
    export_env,
    exported_ok,
    find,
    load_resources,
    run_export,
    write_units,
)

VERSIONS = (KUBERNETES_VERSION, kubernetes_validate.latest_version())


def validate_strict(resources: list[dict[str, Any]]) -> None:
    assert resources
    for resource in resources:
        for version in VERSIONS:
            # Raises ValidationError, or SchemaNotFoundError for a kind/apiVersion it lacks.
            kubernetes_validate.validate(resource, version, strict=True)


def test_validator_is_strict_and_offline() -> None:
    """The check below can fail: an unknown field and a wrong type are both refused."""
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"ports": [{"port": 80}]}}
    validate_strict([good])
    unknown = copy.deepcopy(good)
    unknown["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, strict=True)
    wrong = copy.deepcopy(good)
    wrong["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)


def test_shipped_units_export_valid_manifests(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    model_dir = tmp_path / "models" / "default"
    output = exported_ok("kubernetes", out, "--replicas", "3",
                         env=export_env(tmp_path, MODEL_PATH=str(model_dir)))
    resources = load_resources(out)
    validate_strict(resources)

    deployment = find(resources, "Deployment", "model-service")
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "llm-supervisord/model-service:latest"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/api/health", "port": 5000,
                                               "scheme": "HTTP"}, probe
    startup = container["startupProbe"]
    # StartPeriod=900 / TimeoutStartSec=900: the model may load for 15 minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900
    assert container["readinessProbe"]["failureThreshold"] == 3
    assert {"name": "VERIFY_MODEL", "value": "sha256"} in container["env"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["volumeMounts"] == [{"name": "models", "mountPath": "/app/models/model",
                                          "readOnly": False}]
    claim = find(resources, "PersistentVolumeClaim", "models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by 3 replicas
    # The image runs as uid 10001: the new claim is made writable for its group.
    assert deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}

    service = find(resources, "Service", "model-service")
    assert service["spec"]["ports"][0]["targetPort"] == 5000
    paths = find(resources, "Ingress", "llm-stack")["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
            for p in paths] == [("/api", "model-service", 5000), ("/", "model-service", 5000)]

    # Nothing else became a workload; what was left out is said, with the reason.
    assert {r["kind"] for r in resources} == {"Deployment", "Service", "Ingress",
                                              "PersistentVolumeClaim"}
    assert "gateway.service: the gateway: the [Route] sections become the Ingress" in output
    for unit in ("xvfb", "x11vnc", "novnc", "browser"):
        assert f"{unit}.service: the test desktop stays with llm-supervisord" in output
    assert "stays only in llm-supervisord:" in output and "self-repair" in output


def test_replicas_default_to_model_replicas_and_one_replica_uses_one_writer(tmp_path: Path) -> None:
    out = tmp_path / "two"
    exported_ok("kubernetes", out, env=export_env(tmp_path, MODEL_REPLICAS="2"))
    assert find(load_resources(out), "Deployment", "model-service")["spec"]["replicas"] == 2

    out = tmp_path / "one"
    exported_ok("kubernetes", out, env=export_env(tmp_path))
    resources = load_resources(out)
    deployment = find(resources, "Deployment", "model-service")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert find(resources, "PersistentVolumeClaim", "models")["spec"]["accessModes"] == [
        "ReadWriteOnce"]


def test_table_of_units_maps_every_key(tmp_path: Path) -> None:
    units = write_units(tmp_path / "units", TABLE_UNITS)
    secrets = tmp_path / "web.env"
    secrets.write_text(f"API_KEY={SECRET_VALUE}\n")
    secrets.chmod(0o600)
    out = tmp_path / "k8s"
    env = export_env(tmp_path, MODEL_PATH=str(tmp_path / "models"))
    env["LLM_SUPERVISOR_CONFIG"] = str(tmp_path / "config.toml")
    (tmp_path / "config.toml").write_text(f'[vars]\nSECRETS_FILE = "{secrets}"\n')
    output = exported_ok("kubernetes", out, "--replicas", "2", "--ingress-class", "nginx",
                         "--storage", "50Gi", "--image", "model-service=registry.example/model:7",
                         units_dir=units, env=env)
    resources = load_resources(out)
    validate_strict(resources)

    model = find(resources, "Deployment", "model-service")["spec"]["template"]["spec"]
    container = model["containers"][0]
    assert container["image"] == "registry.example/model:7"
    # The daemon probes the published host port 15000; the pod's probe uses container port 5000.
    assert container["readinessProbe"]["httpGet"] == {"path": "/api/health?deep=1", "port": 5000,
                                                      "scheme": "HTTP"}
    assert container["readinessProbe"]["timeoutSeconds"] == 1  # 0.5 s rounds up to 1
    assert container["livenessProbe"]["failureThreshold"] == 4
    assert container["startupProbe"]["failureThreshold"] == 150  # TimeoutStartSec=300 / 2 s
    assert container["resources"] == {"limits": {"memory": "2Gi", "cpu": "1500m",
                                                 "nvidia.com/gpu": "2"}}
    assert container["volumeMounts"][0] == {"name": "models", "mountPath": "/app/models/model",
                                            "readOnly": True}
    assert find(resources, "PersistentVolumeClaim", "models")["spec"]["resources"] == {
        "requests": {"storage": "50Gi"}}

    # web: state of its own (a named volume) makes it a StatefulSet with a claim per replica.
    web = find(resources, "StatefulSet", "web")
    web_container = web["spec"]["template"]["spec"]["containers"][0]
    assert web_container["readinessProbe"]["tcpSocket"] == {"port": 8080}
    # No StartPeriod: the default TimeoutStartSec (90 s) bounds the start, probed every 5 s.
    assert web_container["startupProbe"]["failureThreshold"] == 18
    assert web["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data-0"
    assert web_container["securityContext"] == {
        "allowPrivilegeEscalation": False, "runAsUser": 1000, "runAsGroup": 2000,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert web_container["envFrom"] == [{"secretRef": {"name": "web-env", "optional": False}}]
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 7
    assert web["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 2000  # User=1000:2000
    assert "securityContext" not in model  # the model directory is mounted read-only
    assert find(resources, "Service", "web")["spec"]["ports"][0]["port"] == 18080

    probe = find(resources, "Deployment", "probe")["spec"]["template"]["spec"]["containers"][0]
    assert probe["livenessProbe"]["exec"] == {"command": ["test", "-f", "/tmp/ready"]}
    assert probe["args"] == ["sleep", "infinity"]
    assert probe["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "GPUs=all exported as nvidia.com/gpu: 1" in output
    assert "probe: Restart=no has no Deployment equivalent" in output

    # Two instances of one template are one workload with two replicas.
    worker = find(resources, "Deployment", "worker")
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["work", "1"]

    ingress = find(resources, "Ingress", "llm-stack")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert [(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
            for p in ingress["rules"][0]["http"]["paths"]] == [
        ("/api", "model-service", 15000), ("/web", "web", 18080)]

    assert "local.service: Runtime=process and no [Container]" in output
    assert not (out / "local.yaml").exists()
    text = all_text(out)
    assert SECRET_VALUE not in text and "API_KEY" not in text
    assert "PLAIN" in text


@pytest.mark.parametrize("units, message", [
    ({"bad.service": "[Service]\nRuntime=docker\n[Container]\nImage=x\nGPUs=lots\n"},
     "GPUs: cannot parse 'lots'"),
    ({"bad.service": "[Service]\nRuntime=docker\nBogus=1\n[Container]\nImage=x\n"},
     "unknown key in [Service]"),
    ({"only.service": "[Service]\nExecStart=/bin/true\n"}, "no unit in"),
])
def test_export_refuses_and_writes_nothing(tmp_path: Path, units: dict[str, str],
                                           message: str) -> None:
    out = tmp_path / "out"
    result = run_export("kubernetes", out, units_dir=write_units(tmp_path / "units", units),
                        env=export_env(tmp_path))
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_image_override_for_an_unknown_service_is_an_error(tmp_path: Path) -> None:
    result = run_export("kubernetes", tmp_path / "out", "--image", "modle-service=x:1",
                        env=export_env(tmp_path))
    assert result.returncode == 1
    assert "--image names no exported service: modle-service" in result.stderr
    assert "model-service" in result.stderr
