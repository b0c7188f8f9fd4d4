"""``MODEL_REPLICAS``: more model servers on this machine, as instances of the model service.

Instance 1 is the shipped ``model-service`` unit itself, unchanged (its name, its port
``MODEL_SERVICE_PORT``), so ``MODEL_REPLICAS=1`` is exactly the single-server stack and every
command that names ``model-service`` keeps working. Instances 2..N are ``model-service@2`` ...
``model-service@N``: the same unit file built again with ``MODEL_SERVICE_PORT`` set to the
base port + i - 1, so their health check, ``[Route]`` upstream, environment and container ports
all follow. The gateway merges the routes of one prefix into one load-balanced route
(:mod:`llm_supervisor.gateway.routes`).

One model directory, written by one server at a time: the first start may fetch or convert the
model into ``MODEL_PATH`` (the llama.cpp engine serves the shipped GGUF directly, so usually
nothing is written). Instances 2..N are ``After=model-service``: they start once instance 1 is
ready, i.e. once whatever it had to write is written, and from then on only read it.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm_supervisor.units.builder import build_unit
from llm_supervisor.units.ini import UnitFileError, read_unit_file
from llm_supervisor.units.loader import LoadResult
from llm_supervisor.units.model import Unit, split_template

REPLICATED_UNIT = "model-service.service"
PORT_VARIABLE = "MODEL_SERVICE_PORT"


def instance_name(index: int, base: str = REPLICATED_UNIT) -> str:
    """Instance 1 is the base unit itself; ``model-service@2.service`` for the others."""
    if index == 1:
        return base
    stem, suffix = base.rsplit(".", 1)
    return f"{stem}@{index}.{suffix}"


def group_of(name: str) -> str:
    """The base unit a replica belongs to (``model-service@2.service`` → ``model-service.service``);
    any other name is its own group."""
    parts = split_template(name)
    if parts is None:
        return name
    template, _instance = parts
    return template.replace("@.", ".")


def add_replicas(result: LoadResult, variables: Mapping[str, str], count: int,
                 base: str = REPLICATED_UNIT) -> list[str]:
    """Add instances 2..``count`` of ``base`` to ``result``; returns their names. Nothing when
    ``count`` is 1 or the base unit is not loaded; an error in ``result`` when its port variable
    is not a number."""
    unit = result.units.get(base)
    if count <= 1 or unit is None:
        return []
    try:
        first_port = int(variables[PORT_VARIABLE])
        raw = read_unit_file(unit.path)
    except (KeyError, ValueError) as exc:
        result.errors.append(UnitFileError(unit.path, None, f"MODEL_REPLICAS={count} needs a "
                                           f"numeric {PORT_VARIABLE}: {exc}"))
        return []
    except UnitFileError as exc:
        result.errors.append(exc)
        return []
    added = []
    for index in range(2, count + 1):
        name = instance_name(index, base)
        port_vars = {**variables, PORT_VARIABLE: str(first_port + index - 1)}
        try:
            replica = build_unit(raw, port_vars, name, str(index))
        except UnitFileError as exc:
            result.errors.append(exc)
            continue
        if base not in replica.after:
            replica.after = [*replica.after, base]
        result.units[name] = replica
        added.append(name)
    return added


def instances(units: Mapping[str, Unit], name: str) -> list[str]:
    """The loaded instances of ``name``'s group, instance 1 first (just ``[name]`` when it has
    no replicas)."""
    group = group_of(name)
    found = [n for n in units if n == group or group_of(n) == group]

    def index(n: str) -> tuple[int, str]:
        instance = units[n].instance or ""
        return (1, "") if n == group else (int(instance) if instance.isdigit() else 1 << 30, n)

    return sorted(found, key=index) or [name]
