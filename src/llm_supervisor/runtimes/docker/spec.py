"""Turning a unit's ``[Container]`` section into docker SDK arguments (pure functions, no engine).

Kept apart from the runtime so the parsing rules (ports, volumes, GPUs, limits, environment) can
be tested and read without a Docker engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.units.container_values import (  # re-exported: the runtime's vocabulary
    PortBinding,
    SpecError,
    VolumeMount,
    parse_memory,
    parse_port,
    parse_volume,
)
from llm_supervisor.units.model import ContainerSpec, Unit

# Docker's built-in networks: never created or removed by us.
BUILTIN_NETWORKS = ("bridge", "host", "none")


@dataclass
class ContainerPlan:
    """Everything ``containers.create`` needs, computed from the unit."""

    ports: list[PortBinding] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    network: str = "llm-network"
    kwargs: dict[str, Any] = field(default_factory=dict)


def port_bindings(ports: list[PortBinding]) -> dict[str, Any]:
    """The SDK's ``ports=`` mapping; several host bindings of one container port become a list."""
    result: dict[str, Any] = {}
    for port in ports:
        host: Any = port.host_port
        if port.host_ip is not None:
            host = (port.host_ip, port.host_port)
        if port.key in result:
            previous = result[port.key]
            result[port.key] = [*previous, host] if isinstance(previous, list) else [previous, host]
        else:
            result[port.key] = host
    return result


def volume_bindings(volumes: list[VolumeMount]) -> dict[str, dict[str, str]]:
    return {v.source: {"bind": v.target, "mode": v.mode} for v in volumes}


def device_requests(gpus: str | None) -> list[Any]:
    """``GPUs=all`` / ``GPUs=2`` / ``GPUs=device=0,1`` → NVIDIA device requests (as ``--gpus``)."""
    if not gpus:
        return []
    from docker.types import DeviceRequest

    value = gpus.strip()
    if value == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if value.isdigit():
        return [DeviceRequest(count=int(value), capabilities=[["gpu"]])]
    if value.startswith("device="):
        ids = [part for part in value.removeprefix("device=").split(",") if part]
        return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    raise SpecError(f"[Container] GPUs: cannot parse {gpus!r} (all, a count, or device=0,1)")


def env_file_keys(unit: Unit) -> set[str]:
    """Names assigned in the unit's EnvironmentFile= files (their values come from ``env``)."""
    keys: set[str] = set()
    for path, _optional in unit.environment_files:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith(("#", ";")) and "=" in stripped:
                keys.add(stripped.split("=", 1)[0].removeprefix("export ").strip())
    return keys


def container_environment(unit: Unit, env: Mapping[str, str]) -> dict[str, str]:
    """Only what the unit asked for (Environment=, EnvironmentFile=) goes into the container:
    the daemon's own environment (PATH, HOME, host paths) would be wrong inside an image."""
    wanted = set(unit.environment) | env_file_keys(unit) | {"LLM_SUPERVISOR_UNIT"}
    return {key: env[key] for key in sorted(wanted) if key in env}


def stack_name(name: str, stack: str | None) -> str:
    """A network's or named volume's name in this stack: ``llm-network-<owner>``, so two
    daemons on one engine never share a network (nor its aliases) or a volume (the display,
    the X cookie). Docker's own networks and ``container:X`` keep their names."""
    if stack is None or name in BUILTIN_NETWORKS or name.startswith("container:"):
        return name
    return f"{name}-{stack}"


def plan_container(unit: Unit, env: Mapping[str, str], base_dir: Path,
                   stack: str | None = None) -> ContainerPlan:
    """Build the create() arguments for ``unit``; raises :class:`SpecError` on bad values.
    ``stack``: the daemon's owner id, suffixed to network and named volume names."""
    spec: ContainerSpec | None = unit.container
    if spec is None:
        raise SpecError("Runtime=docker needs a [Container] section with Image= or Build=")
    plan = ContainerPlan(network=stack_name(spec.network or "llm-network", stack))
    plan.ports = [parse_port(p) for p in spec.ports]
    plan.volumes = [_in_stack(parse_volume(v, base_dir), stack) for v in spec.volumes]
    plan.environment = container_environment(unit, env)
    kwargs: dict[str, Any] = {
        "init": True,  # docker-init as PID 1 forwards signals (a bare `sh` ignores SIGTERM)
        "detach": True,
        "environment": plan.environment,
        "ports": port_bindings(plan.ports),
        "volumes": volume_bindings(plan.volumes),
        "stop_signal": _signal_name(unit.kill_signal),
        # Least privilege (issue 9.5): no capabilities but those the unit keeps
        # (AmbientCapabilities=, e.g. CAP_NET_BIND_SERVICE), and no gaining any through setuid
        # binaries or file capabilities. The images run as a non-root USER besides.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    if unit.ambient_capabilities:
        kwargs["cap_add"] = list(unit.ambient_capabilities)
    if spec.command is not None:  # ExecStart= is a host command line; the image has its own
        kwargs["command"] = list(spec.command)
    if unit.working_directory:
        kwargs["working_dir"] = unit.working_directory
    if spec.user:
        kwargs["user"] = spec.user
    if spec.memory:
        kwargs["mem_limit"] = parse_memory(spec.memory)
    elif unit.memory_max is not None:  # MemoryMax=: the same limit as for a process unit
        kwargs["mem_limit"] = unit.memory_max
        kwargs["memswap_limit"] = unit.memory_max  # no swap standing in for the limit
    if unit.memory_high is not None:  # MemoryHigh=: reclaimed first under pressure
        kwargs["mem_reservation"] = unit.memory_high
    if spec.cpus:
        kwargs["nano_cpus"] = int(spec.cpus * 1e9)
    requests = device_requests(spec.gpus)
    if requests:
        kwargs["device_requests"] = requests
    if plan.network == "host":
        kwargs["network_mode"] = "host"
        kwargs.pop("ports")
    else:
        kwargs["network"] = plan.network
        if plan.network not in BUILTIN_NETWORKS and not plan.network.startswith("container:"):
            # Reachable from the other containers on the network by its unit name
            # (http://model-service:5000), like a compose service.
            kwargs["networking_config"] = {plan.network: {"Aliases": [unit.short_name]}}
    plan.kwargs = kwargs
    return plan


def _in_stack(volume: VolumeMount, stack: str | None) -> VolumeMount:
    if not volume.named:
        return volume
    return VolumeMount(stack_name(volume.source, stack), volume.target, volume.mode, True)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
