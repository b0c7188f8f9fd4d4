"""Catalog entries → units: each non-default model is a ``model@NAME.service`` unit.

The unit is the model service (``python -m llm_supervisor.model_server``) with the model's own
``MODEL_PATH``, port, engine, context and slots in its environment, so everything the
supervisor does for a unit (restart with backoff, health, weights repair, logs, status, both
runtimes) works for every model on its own. The ``default`` model is the shipped
``model-service.service``, unchanged.

Not ``WantedBy=stack.target`` unless ``Preload=yes``: a model unit is started by activation
(the first request that names it) or by ``llm-supervisorctl models load NAME``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from llm_supervisor.units.builder import build_unit
from llm_supervisor.units.catalog import DEFAULT_MODEL_UNIT, Catalog, ModelEntry
from llm_supervisor.units.ini import UnitFileError, parse_unit_text
from llm_supervisor.units.loader import LoadResult


def model_dir(entry: ModelEntry, state_dir: Path) -> Path:
    """Where the model's weights live (a directory the model server fills, or the user's path)."""
    if entry.source.kind == "path" and entry.source.path is not None:
        return entry.source.path
    return state_dir / "models" / entry.name


def assign_ports(catalog: Catalog, base: int) -> dict[str, int]:
    """``Port=`` where given, else ``base``, ``base + 1`` ... in name order, skipping taken ones."""
    taken = {e.port for e in catalog.entries.values() if e.port is not None}
    ports: dict[str, int] = {}
    candidate = base
    for name in catalog.names():
        entry = catalog.entries[name]
        if entry.is_default:
            continue
        if entry.port is not None:
            ports[name] = entry.port
            continue
        while candidate in taken:
            candidate += 1
        ports[name] = candidate
        taken.add(candidate)
    return ports


def _environment(entry: ModelEntry, port: int, directory: Path) -> list[str]:
    env = {
        "MODEL_NAME": entry.name,
        "MODEL_SERVICE_PORT": str(port),
        "MODEL_PATH": str(directory),
        "ENGINE": entry.engine,
        "LLAMA_N_CTX": str(entry.context_size),
        "MAX_BATCH_SIZE": str(entry.slots),
        "VERIFY_MODEL": "sha256",
    }
    if entry.source.kind == "hub":
        env["MODEL_ID"] = entry.source.repo or ""
        if entry.source.gguf_file:
            env["GGUF_FILE"] = entry.source.gguf_file
    else:  # offline or a local path: never reach for the hub
        env["MODEL_ID"] = ""
        env["HF_HUB_OFFLINE"] = "1"
    return [shlex.quote(f"{key}={value}") for key, value in env.items()]


def render_unit(entry: ModelEntry, port: int, directory: Path) -> str:
    """The unit file text of ``model@NAME.service`` (``llm-supervisorctl models`` shows it)."""
    prepare = ""
    if entry.source.kind == "offline" and entry.source.quant:
        # Makes (or, when damaged, remakes) the requantized GGUF before the server starts.
        prepare = (f"ExecStartPre=${{PYTHON}} -m llm_supervisor.model_server.sources.requantize "
                   f"--type {entry.source.quant} --dest {shlex.quote(str(directory))}\n")
    wanted = "[Install]\nWantedBy=stack.target\n" if entry.preload else ""
    return (
        f"[Unit]\nDescription=Model {entry.name}"
        f"{' (' + entry.description + ')' if entry.description else ''}\n\n"
        "[Service]\n"
        f"{prepare}"
        "ExecStart=${PYTHON} -m llm_supervisor.model_server\n"
        "User=${UNIT_USER}\n"
        f"Environment={' '.join(_environment(entry, port, directory))}\n"
        "Restart=on-failure\nRestartSec=1\nRestartMaxDelaySec=30\n"
        "StartLimitBurst=4\nStartLimitIntervalSec=120\n"
        "TimeoutStartSec=900\nTimeoutStopSec=15\n\n"
        "[Health]\n"
        f"Check=http://127.0.0.1:{port}/api/health\n"
        "Interval=2\nTimeout=2\nRetries=3\nStartPeriod=900\n\n"
        "[Container]\n"
        "Build=.\nDockerfile=packaging/docker/model-service/Dockerfile\n"
        f"Ports=127.0.0.1:{port}:{port}\n"
        f"Volumes={directory}:/app/models/model\n\n"
        f"{wanted}"
    )


def add_model_units(result: LoadResult, variables: Mapping[str, str], catalog: Catalog,
                    port_base: int) -> list[str]:
    """Add a unit per non-default catalog model to ``result``; returns their names. A unit file
    of the same name in the units directory wins (the user's own override). Nothing when the
    stack has no model service (``model-service.service``): the catalog extends it."""
    if DEFAULT_MODEL_UNIT not in result.units:
        return []
    state_dir = Path(variables["STATE_DIR"])
    ports = assign_ports(catalog, port_base)
    added = []
    for name in catalog.names():
        entry = catalog.entries[name]
        if entry.is_default or entry.unit_name in result.units:
            continue
        text = render_unit(entry, ports[name], model_dir(entry, state_dir))
        try:
            unit = build_unit(parse_unit_text(text, entry.path), variables, entry.unit_name)
        except UnitFileError as exc:
            result.errors.append(exc)
            continue
        result.units[unit.name] = unit
        added.append(unit.name)
    result.errors.extend(catalog.errors)
    return added


def model_ports(catalog: Catalog, port_base: int, default_port: int) -> dict[str, int]:
    """Every model's port, the default model's included."""
    return {**assign_ports(catalog, port_base), "default": default_port}
