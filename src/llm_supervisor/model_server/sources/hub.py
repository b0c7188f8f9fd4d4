"""Download a model (a transformers checkpoint or one GGUF file) from a Hugging Face hub, checked
against the hub's sizes and LFS digests, into a staging directory renamed into place."""

from __future__ import annotations

import os
import shutil
import threading
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from llm_supervisor.core.disk_space import shortfall
from llm_supervisor.model_server.progress import CountingBar
from llm_supervisor.model_server.sources.staging import install_dir
from llm_supervisor.model_server.sources.types import (
    FORMAT_GGUF,
    HubUnavailable,
    ModelSourceError,
    ProgressFn,
)
from llm_supervisor.model_server.weights import manifest as manifest_mod
from llm_supervisor.model_server.weights.fetch_lock import download_dir, fetch_lock, quarantine

_HUB_WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
_HUB_FALLBACK_WEIGHT_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
_HUB_OTHER_PATTERNS = (
    "*.json",
    "tokenizer.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
    "vocab.json",
)

DOWNLOAD_MARGIN = 16 << 20  # hub client metadata, manifest, lock files

GGUF_PREFERENCE = ("Q4_K_M", "Q4_0", "Q4_1", "Q4_K_S", "Q5_K_M", "Q5_0", "Q8_0")
"""Which GGUF of a repo with several to download when ``GGUF_FILE`` is not set."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks us not to use the network."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def fetch_from_hub(
    repo_id: str,
    dest: str | os.PathLike[str],
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    on_progress: ProgressFn | None = None,
    replace: bool = False,
    log: Any = None,
    want: str = "auto",
    gguf_file: str | None = None,
) -> Path:
    """Download ``repo_id`` (weights as safetensors, config and tokenizer files) into ``dest``.

    ``want="gguf"`` (or ``auto`` on a repo without safetensors/PyTorch weights but with GGUF
    files) downloads one GGUF file instead: ``gguf_file`` (a name or a glob such as
    ``*Q4_K_M.gguf``), else the first of :data:`GGUF_PREFERENCE` the repo has.

    One metadata request decides whether the hub is reachable: any failure there raises
    :class:`HubUnavailable` within ``timeout`` seconds instead of sitting in retry loops.
    Downloaded files are checked against the hub's sizes and LFS SHA-256 digests, a manifest is
    written, and the result is renamed into ``dest`` (``replace=True`` swaps out an existing
    directory, for repair). ``endpoint`` defaults to ``HF_ENDPOINT``.
    """
    from huggingface_hub import HfApi, hf_hub_download

    if hub_offline():
        raise HubUnavailable("HF_HUB_OFFLINE is set")
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    except Exception as exc:  # connection refused, DNS, timeout, 401/404, offline mode ...
        raise HubUnavailable(f"{type(exc).__name__}: {exc}") from exc

    siblings = {s.rfilename: s for s in (info.siblings or [])}
    wanted = select_hub_files(list(siblings))
    has_weights = any(fnmatch(n, "*.safetensors") or fnmatch(n, "*.bin") for n in wanted)
    ggufs = [n for n in siblings if n.endswith(".gguf") and "/" not in n]
    if want == FORMAT_GGUF or (want == "auto" and not has_weights and ggufs):
        wanted = [select_gguf(repo_id, ggufs, gguf_file)]
    elif not has_weights:
        raise HubUnavailable(f"{repo_id} has no safetensors or PyTorch weights")
    total = sum(siblings[n].size or 0 for n in wanted) or 1
    done = 0
    lock = threading.Lock()

    def on_bytes(bar: Any) -> None:
        if on_progress is None:
            return
        with lock:
            current = done + bar.n
        on_progress(
            current / total,
            bytes_done=int(current),
            bytes_total=int(total),
            file=getattr(bar, "desc", ""),
        )


    class _Bar(CountingBar):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, on_update=on_bytes, **kwargs)

    dest = Path(dest)
    with fetch_lock(dest, log):
        if not replace and _fetched(dest):
            if log:  # the fetch we waited for put it there
                log.info("hub_download_skipped", model_path=str(dest), reason="already fetched")
            return dest
        staging = download_dir(dest)
        fetch = list(wanted)
        have = sum((staging / n).stat().st_size for n in wanted if (staging / n).is_file())
        # The files, then the manifest's read-back: the files plus a margin for the hub's cache.
        missing = shortfall(staging, total - have + DOWNLOAD_MARGIN, f"downloading {repo_id}")
        if missing:
            raise ModelSourceError(missing)
        for attempt in (1, 2):
            for name in fetch:
                if log:
                    log.info("hub_download_file", repo_id=repo_id, file=name,
                             size=siblings[name].size)
                try:
                    hf_hub_download(
                        repo_id,
                        name,
                        revision=info.sha,
                        local_dir=staging,
                        endpoint=endpoint,
                        etag_timeout=timeout,
                        tqdm_class=_Bar,
                    )
                except Exception as exc:  # the partial download stays for the next try
                    raise HubUnavailable(f"downloading {name}: {type(exc).__name__}: {exc}") from exc
                done += siblings[name].size or 0
            wrong = _wrong_files(staging, {n: siblings[n] for n in wanted})
            if not wrong:
                break
            for name, why in wrong.items():
                kept = quarantine(staging, name, dest)
                if log:
                    log.warning("hub_download_quarantined", file=name, problem=why,
                                quarantined=str(kept), attempt=attempt)
            if attempt == 2:
                shutil.rmtree(staging, ignore_errors=True)
                raise HubUnavailable("; ".join(f"{n}: {why}" for n, why in wrong.items()))
            fetch = list(wrong)
            done -= sum(siblings[n].size or 0 for n in wrong)
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        source = {
            "kind": "hub",
            "repo_id": repo_id,
            "revision": info.sha,
            "endpoint": endpoint or "https://huggingface.co",
        }
        if wanted[0].endswith(".gguf"):
            source["file"] = wanted[0]
        manifest_mod.write_manifest(staging, source)
        try:
            install_dir(staging, dest, replace=replace)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if log:
        log.info("hub_download_done", repo_id=repo_id, revision=info.sha, bytes=total)
    return dest


def select_gguf(repo_id: str, names: list[str], pattern: str | None) -> str:
    """The one GGUF file to download from ``names`` (see :func:`fetch_from_hub`)."""
    if pattern:
        matches = sorted(n for n in names if n == pattern or fnmatch(n, pattern))
        if not matches:
            raise HubUnavailable(
                f"{repo_id} has no file matching GGUF_FILE={pattern!r} (it has: {sorted(names)})"
            )
        return matches[0]
    if not names:
        raise HubUnavailable(f"{repo_id} has no .gguf file")
    for quant in GGUF_PREFERENCE:
        for name in sorted(names):
            if quant.lower() in name.lower():
                return name
    return sorted(names)[0]


def select_hub_files(names: list[str]) -> list[str]:
    """Top-level repo files needed to load the model: safetensors weights if the repo has them
    (else PyTorch .bin), config, generation config and tokenizer files."""
    top = [n for n in names if "/" not in n]
    weights = [n for n in top if any(fnmatch(n, p) for p in _HUB_WEIGHT_PATTERNS)]
    if not any(n.endswith(".safetensors") for n in weights):
        weights = [n for n in top if any(fnmatch(n, p) for p in _HUB_FALLBACK_WEIGHT_PATTERNS)]
    other = [n for n in top if any(fnmatch(n, p) for p in _HUB_OTHER_PATTERNS)]
    return sorted(set(weights) | set(other))


def _fetched(dest: Path) -> bool:
    """A model with a manifest is in place (another fetch finished while we waited)."""
    try:
        return dest.is_dir() and manifest_mod.read_manifest(dest) is not None
    except (manifest_mod.ManifestError, OSError):
        return False


def _wrong_files(staging: Path, siblings: dict[str, Any]) -> dict[str, str]:
    """Files whose size or SHA-256 differs from what the hub announced (name → problem)."""
    import hashlib

    wrong: dict[str, str] = {}
    for name, sib in siblings.items():
        path = staging / name
        if not path.is_file():
            wrong[name] = "was not downloaded"
            continue
        size = path.stat().st_size
        if sib.size is not None and size != sib.size:
            wrong[name] = f"size {size} != hub size {sib.size}"
            continue
        lfs_sha = getattr(sib.lfs, "sha256", None) if sib.lfs else None
        if lfs_sha:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != lfs_sha:
                wrong[name] = f"sha256 {digest.hexdigest()} != hub sha256 {lfs_sha}"
    return wrong
