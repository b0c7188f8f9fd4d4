"""A :class:`Stack` as Kubernetes manifests (plain dicts, apps/v1, v1, networking.k8s.io/v1).

- a Deployment per service (a StatefulSet when it has volumes of its own: per-replica state),
  ``replicas`` from the Stack, probes from ``[Health]``: readiness and liveness (``Retries``
  failures, as the daemon restarts an unhealthy unit) and a startupProbe covering
  ``StartPeriod``/``TimeoutStartSec`` (the model may load for minutes);
- a Service per service with ports, an Ingress from the ``[Route]`` sections;
- a PersistentVolumeClaim for the model directory, shared by the model service's replicas
  (ReadWriteMany when there are several: the storage class must offer it);
- resources from Memory=/CPUs=, GPUs= as ``nvidia.com/gpu`` limits; no secret values, only
  Secret names (``envFrom`` for EnvironmentFile=).
"""

from __future__ import annotations

import math
import re
from typing import Any

from llm_supervisor.export.model import MODEL_VOLUME, Check, Service, Stack

PART_OF = "llm-supervisord"
MANAGED_BY = "llm-supervisorctl-export"
# The oldest Kubernetes the manifests are written for (every API used is GA there).
KUBERNETES_VERSION = "1.30"
IMAGE_UID = 10001  # USER of the images in packaging/docker (app, gateway)


SECRET_SUFFIX = "-secret.yaml"


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def _metadata(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "labels": {**labels(name), "app.kubernetes.io/managed-by": MANAGED_BY},
            **extra}


def quantity(count: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that divides them."""
    for suffix, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if count % factor == 0:
            return f"{count // factor}{suffix}"
    return str(count)


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def _handler(check: Check) -> dict[str, Any]:
    if check.kind == "http":
        return {"httpGet": {"path": check.path, "port": check.port,
                            "scheme": check.scheme.upper()}}
    if check.kind == "tcp":
        return {"tcpSocket": {"port": check.port}}
    return {"exec": {"command": list(check.command)}}


def probes(service: Service) -> dict[str, Any]:
    check = service.check
    if check is None:
        return {}
    period = _seconds(check.interval)
    common = {**_handler(check), "periodSeconds": period, "timeoutSeconds": _seconds(check.timeout)}
    steady = {**common, "failureThreshold": max(1, check.retries)}
    result: dict[str, Any] = {"readinessProbe": dict(steady), "livenessProbe": dict(steady)}
    start_timeout = service.start_timeout if math.isfinite(service.start_timeout) else 0.0
    budget = max(check.start_period, start_timeout)
    if budget > 0:
        result["startupProbe"] = {**common, "failureThreshold": max(1, math.ceil(budget / period))}
    return result


def _resources(service: Service, notes: list[str]) -> dict[str, Any]:
    limits: dict[str, str] = {}
    if service.memory_bytes:
        limits["memory"] = quantity(service.memory_bytes)
    if service.cpus:
        limits["cpu"] = f"{round(service.cpus * 1000)}m"
    if service.gpus is not None:
        if service.gpus == "all":
            notes.append(f"{service.name}: GPUs=all exported as nvidia.com/gpu: 1 (a pod asks "
                         "for a number of GPUs; edit it for more)")
        limits["nvidia.com/gpu"] = "1" if service.gpus == "all" else str(service.gpus)
    return {"limits": limits} if limits else {}


def _security_context(service: Service, notes: list[str]) -> dict[str, Any]:
    """As the docker runtime runs containers: no capabilities but the unit's, no escalation."""
    context: dict[str, Any] = {"allowPrivilegeEscalation": False,
                               "capabilities": {"drop": ["ALL"]}}
    if service.capabilities:
        context["capabilities"]["add"] = [c.removeprefix("CAP_") for c in service.capabilities]
    if service.user:
        match = re.fullmatch(r"(\d+)(?::(\d+))?", service.user)
        if match:
            context["runAsUser"] = int(match.group(1))
            if match.group(2):
                context["runAsGroup"] = int(match.group(2))
        else:
            notes.append(f"{service.name}: [Container] User={service.user} is a name; Kubernetes "
                         "needs a number (runAsUser): the image's USER applies")
    return context


def _group(user: str | None) -> int:
    """The group that owns the claims: [Container] User='s (UID:GID or UID), else our images'."""
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user or "")
    if match:
        return int(match.group(2) or match.group(1))
    return IMAGE_UID


def _volume_name(index: int, kind: str) -> str:
    return MODEL_VOLUME if kind == "model" else f"data-{index}"


def _container(service: Service, notes: list[str]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": service.name, "image": service.image,
                                 "imagePullPolicy": "IfNotPresent"}
    if service.command is not None:
        container["args"] = list(service.command)  # Command= replaces the image's CMD
    if service.working_dir:
        container["workingDir"] = service.working_dir
    env = [{"name": k, "value": v} for k, v in sorted(service.environment.items())]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name(service),
                                                       "key": k}}}
            for k in sorted(service.secret_environment)]
    if env:
        container["env"] = env
    if service.environment_files:
        container["envFrom"] = [{"secretRef": {"name": f"{service.name}-env", "optional": False}}]
    if service.ports:
        container["ports"] = [{"containerPort": p.container_port, "protocol": p.protocol.upper()}
                              for p in _unique_ports(service)]
    container.update(probes(service))
    resources = _resources(service, notes)
    if resources:
        container["resources"] = resources
    container["securityContext"] = _security_context(service, notes)
    if service.mounts:
        container["volumeMounts"] = [
            {"name": _volume_name(i, m.kind), "mountPath": m.target, "readOnly": m.read_only}
            for i, m in enumerate(service.mounts)]
    return container


def _unique_ports(service: Service) -> list[Any]:
    seen: dict[tuple[int, str], Any] = {}
    for port in service.ports:
        seen.setdefault((port.container_port, port.protocol), port)
    return list(seen.values())


def secret_name(service: Service) -> str:
    return f"{service.name}-environment"


def secret_manifest(service: Service) -> dict[str, Any]:
    """The values of the secret-looking ``Environment=`` keys (its file is written 0600)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(secret_name(service)),
            "type": "Opaque", "stringData": dict(sorted(service.secret_environment.items()))}


def workload(service: Service, notes: list[str]) -> dict[str, Any]:
    own_volumes = [(i, m) for i, m in enumerate(service.mounts) if m.kind == "volume"]
    pod_volumes: list[dict[str, Any]] = []
    for index, mount in enumerate(service.mounts):
        if mount.kind == "model":
            pod_volumes.append({"name": MODEL_VOLUME,
                                "persistentVolumeClaim": {"claimName": MODEL_VOLUME}})
        elif mount.kind == "bind":
            pod_volumes.append({"name": _volume_name(index, "bind"),
                                "hostPath": {"path": mount.source}})
    pod: dict[str, Any] = {
        "containers": [_container(service, notes)],
        "terminationGracePeriodSeconds": _seconds(service.stop_timeout),
    }
    if any(m.kind in ("model", "volume") and not m.read_only for m in service.mounts):
        # A new claim is owned by root: let the image's non-root user write to it.
        pod["securityContext"] = {"fsGroup": _group(service.user),
                                  "fsGroupChangePolicy": "OnRootMismatch"}
    if pod_volumes:
        pod["volumes"] = pod_volumes
    spec: dict[str, Any] = {
        "replicas": service.replicas,
        "selector": {"matchLabels": labels(service.name)},
        "template": {"metadata": {"labels": labels(service.name)}, "spec": pod},
    }
    if service.restart == "no":
        notes.append(f"{service.name}: Restart=no has no Deployment equivalent (pods always "
                     "restart)")
    if own_volumes:
        # Volumes of its own (not the shared model directory): state per replica.
        spec["serviceName"] = service.name
        spec["volumeClaimTemplates"] = [
            {"metadata": {"name": _volume_name(i, "volume")},
             "spec": {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "1Gi"}}}}
            for i, _m in own_volumes]
        return {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": _metadata(service.name), "spec": spec}
    if any(m.kind == "model" for m in service.mounts) and service.replicas == 1:
        # One ReadWriteOnce claim: the old pod lets go of it before the new one starts.
        spec["strategy"] = {"type": "Recreate"}
    else:
        spec["strategy"] = {"type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(service.name),
            "spec": spec}


def service_manifest(service: Service) -> dict[str, Any]:
    ports = []
    for port in _unique_ports(service):
        ports.append({"name": f"{port.protocol}-{port.container_port}",
                      "port": port.published or port.container_port,
                      "targetPort": port.container_port, "protocol": port.protocol.upper()})
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(service.name),
            "spec": {"type": "ClusterIP", "selector": labels(service.name), "ports": ports}}


def model_claim(stack: Stack, storage: str, storage_class: str | None) -> dict[str, Any]:
    shared = max((s.replicas for s in stack.services
                  if any(m.kind == "model" for m in s.mounts)), default=1)
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany" if shared > 1 else "ReadWriteOnce"],
        "resources": {"requests": {"storage": storage}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(MODEL_VOLUME), "spec": spec}


def ingress(stack: Stack, ingress_class: str | None, name: str = "llm-stack") -> dict[str, Any]:
    paths = [{"path": route.path_prefix, "pathType": "Prefix",
              "backend": {"service": {"name": route.service, "port": {"number": _service_port(
                  stack, route.service, route.port)}}}}
             for route in sorted(stack.routes, key=lambda r: -len(r.path_prefix))]
    spec: dict[str, Any] = {"rules": [{"http": {"paths": paths}}]}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": _metadata(name),
            "spec": spec}


def _service_port(stack: Stack, name: str, container_port: int) -> int:
    service = stack.service(name)
    assert service is not None
    port = next((p for p in service.ports if p.container_port == container_port), None)
    return (port.published or container_port) if port else container_port


def manifests(stack: Stack, *, storage: str = "20Gi", storage_class: str | None = None,
              ingress_class: str | None = None) -> tuple[dict[str, list[dict[str, Any]]],
                                                          list[str]]:
    """File name → the resources it holds, and notes on what was mapped approximately."""
    notes: list[str] = []
    files: dict[str, list[dict[str, Any]]] = {}
    if any(m.kind == "model" for s in stack.services for m in s.mounts):
        files["model-pvc.yaml"] = [model_claim(stack, storage, storage_class)]
    for service in stack.services:
        resources = [workload(service, notes)]
        if service.ports:
            resources.append(service_manifest(service))
        else:
            notes.append(f"{service.name}: no [Container] Ports=, so no Service")
        if service.environment_files:
            notes.append(f"{service.name}: EnvironmentFile= becomes the Secret "
                         f"{service.name}-env (create it: kubectl create secret generic "
                         f"{service.name}-env --from-env-file=FILE); values are never exported")
        if service.check is not None and service.check.kind == "exec":
            notes.append(f"{service.name}: the exec check runs inside the container here")
        files[f"{service.name}.yaml"] = resources
        if service.secret_environment:
            files[f"{service.name}{SECRET_SUFFIX}"] = [secret_manifest(service)]
            notes.append(f"{service.name}: {', '.join(sorted(service.secret_environment))} "
                         f"come from the Secret {secret_name(service)} in "
                         f"{service.name}{SECRET_SUFFIX} (0600): keep it out of version control")
    if stack.routes:
        files["ingress.yaml"] = [ingress(stack, ingress_class)]
        for route in stack.routes:
            if route.strip_prefix:
                notes.append(f"{route.declared_by}: [Route] StripPrefix=yes has no field in a "
                             "plain Ingress (use your controller's rewrite annotation)")
    return files, notes
