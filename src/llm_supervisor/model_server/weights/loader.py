"""Load a model directory into a (model, tokenizer) pair, reporting real progress, and turn
weight-loading failures into one :class:`WeightsLoadError` that names the damaged file.

Detection patterns (measured, see FACTS.md): truncated, empty or corrupt safetensors raise
``safetensors.SafetensorError`` (not an ``OSError``); missing files and folders raise
``OSError``; unreadable files ``PermissionError``; a corrupt ``config.json`` a ``ValueError``.
Random bytes inside tensor data load silently: only the manifest catches those.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from llm_supervisor.model_server.progress import CountingBar, LoadProgress
from llm_supervisor.model_server.settings import ModelServerSettings
from llm_supervisor.model_server.weights.loaded import (
    LoadedModel,
    WeightsLoadError,
    verify_against_manifest,
)

QUANT_NONE = "none"
QUANT_INT8 = "bitsandbytes-int8"


def pick_device(setting: str) -> str:
    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """True if the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def pick_dtype(setting: str, device: str) -> torch.dtype:
    if setting != "auto":
        return getattr(torch, setting)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


@contextmanager
def weight_progress(progress: LoadProgress) -> Iterator[None]:
    """Feed transformers' "Loading weights" counter (one tick per tensor) into ``progress``
    through transformers' public tqdm hook; every other bar stays silent."""
    from transformers.utils import logging as hf_logging

    def hook(factory: Any, args: tuple, kwargs: dict) -> Any:
        if str(kwargs.get("desc", "")).startswith("Loading weights"):
            kwargs.pop("disable", None)
            return CountingBar(
                *args,
                on_update=lambda b: progress.update(
                    b.n / (b.total or 1), tensors=int(b.n), tensors_total=int(b.total or 0)
                ),
                **kwargs,
            )
        return factory(*args, **kwargs)

    setter = getattr(hf_logging, "set_tqdm_hook", None)
    if setter is None:  # older transformers: no hook, the stage jumps 0 -> 1
        yield
        return
    previous = setter(hook)
    try:
        yield
    finally:
        setter(previous)


def is_weights_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the files are bad (as opposed to a bug or a missing library)."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover
        SafetensorError = ()  # type: ignore[assignment]  # noqa: N806
    return isinstance(exc, OSError | SafetensorError | json.JSONDecodeError | UnicodeDecodeError)


def blame_file(model_dir: Path, exc: BaseException) -> str:
    """Best guess of the file behind a load failure, for the ``weights_load_failed`` event."""
    filename = getattr(exc, "filename", None)
    if filename:
        return str(filename)
    config = model_dir / "config.json"
    if not model_dir.is_dir():
        return str(model_dir)
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return str(config)
    from safetensors import safe_open

    weights = sorted(model_dir.glob("*.safetensors"))
    for path in weights:
        try:
            with safe_open(str(path), framework="pt") as fh:
                fh.keys()
        except Exception:
            return str(path)
    for index in model_dir.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError):
            return str(index)
        for shard in sorted(shards):
            if not (model_dir / shard).is_file():
                return str(model_dir / shard)
    if not weights and not list(model_dir.glob("*.bin")):
        return str(model_dir / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = model_dir / name
        if path.exists() and not os.access(path, os.R_OK):
            return str(path)
    return str(model_dir)


def weights_error(model_dir: Path, exc: BaseException) -> WeightsLoadError:
    """Wrap a load exception, naming the file to blame.

    safetensors 0.8 reports an unreadable file (EACCES) as ``FileNotFoundError: No such file``;
    when the blamed file exists but cannot be opened, the real ``PermissionError`` is reported
    and the library's exception is kept as ``library_error``.
    """
    file = blame_file(model_dir, exc)
    if not isinstance(exc, PermissionError) and os.path.isfile(file):
        try:
            with open(file, "rb"):
                pass
        except PermissionError as real:
            return WeightsLoadError(file, real, library_error=exc)
    return WeightsLoadError(file, exc)


def load_model(
    model_dir: Path,
    settings: ModelServerSettings,
    progress: LoadProgress,
    *,
    source: dict[str, Any] | None = None,
    log: Any = None,
) -> LoadedModel:
    """Load tokenizer and model from ``model_dir`` (never touching the network).

    Raises :class:`WeightsLoadError` for damaged or unreadable files. With ``USE_INT8`` the
    model loads through bitsandbytes 8-bit (fp16 compute dtype, which bitsandbytes needs to
    avoid a cast per matmul); if that fails for any reason but bad files, it falls back to full
    precision and says why in ``int8_fallback_reason``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # not JSON; our own progress is in /api/health
    started = time.monotonic()
    device = pick_device(settings.device)
    source = source or {}

    progress.stage("loading_config", 0.0, 0.05)
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        progress.stage("loading_tokenizer", 0.05, 0.1)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        if is_weights_error(exc) or isinstance(exc, ValueError):
            raise weights_error(model_dir, exc) from exc
        raise

    int8_reason: str | None = None
    model = None
    quantization = QUANT_NONE
    if settings.use_int8:
        int8_reason = _int8_unavailable_reason(device)
        if int8_reason is None:
            progress.stage("loading_weights", 0.1, 0.9, quantization=QUANT_INT8)
            try:
                model = _load_int8(AutoModelForCausalLM, model_dir, device, progress)
                quantization = QUANT_INT8
            except Exception as exc:
                if is_weights_error(exc):
                    raise weights_error(model_dir, exc) from exc
                int8_reason = f"{type(exc).__name__}: {exc}"
        if int8_reason and log:
            log.warning("int8_unavailable", reason=int8_reason, fallback="full precision")

    if model is None:
        dtype = pick_dtype(settings.dtype, device)
        progress.stage("loading_weights", 0.1, 0.9, quantization=QUANT_NONE)
        try:
            with weight_progress(progress):
                model = AutoModelForCausalLM.from_pretrained(
                    model_dir, dtype=dtype, local_files_only=True, device_map={"": device}
                )
        except Exception as exc:
            if is_weights_error(exc) or isinstance(exc, ValueError) or _is_shape_error(exc):
                raise weights_error(model_dir, exc) from exc
            raise
    model.eval()

    progress.stage("verifying", 0.9, 0.95, mode=settings.verify_model)
    _verify_after_load(model_dir, settings.verify_model, log)

    progress.stage("warming_up", 0.95, 1.0)
    _warm_up(model, tokenizer, device)

    eos = _eos_ids(model, tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    param_dtype = next(model.parameters()).dtype
    compute_dtype = getattr(model, "dtype", param_dtype)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=str(source.get("repo_id") or model_dir.name),
        path=model_dir,
        source=source,
        device=device,
        dtype=str(compute_dtype).removeprefix("torch."),
        quantization=quantization,
        int8_requested=settings.use_int8,
        int8_fallback_reason=int8_reason,
        load_seconds=time.monotonic() - started,
        max_context=int(getattr(config, "max_position_embeddings", 0) or 1 << 30),
        eos_token_ids=eos,
    )


def _is_shape_error(exc: BaseException) -> bool:
    """A checkpoint whose tensors do not fit the config (wrong or mixed-up files)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("size mismatch" in text or "state_dict" in text)


def _int8_unavailable_reason(device: str) -> str | None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from a broken native library
        return f"bitsandbytes cannot be imported: {type(exc).__name__}: {exc}"
    from transformers.utils import is_accelerate_available, is_bitsandbytes_available

    if not is_bitsandbytes_available():
        return "transformers reports bitsandbytes as unavailable"
    if not is_accelerate_available():
        return "accelerate is not installed (transformers needs it for 8-bit loading)"
    return None


def _load_int8(auto_cls: Any, model_dir: Path, device: str, progress: LoadProgress) -> Any:
    from transformers import BitsAndBytesConfig

    with weight_progress(progress):
        return auto_cls.from_pretrained(
            model_dir,
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            dtype=torch.float16,
            local_files_only=True,
            device_map={"": device},
        )


_verify_after_load = verify_against_manifest


def _warm_up(model: Any, tokenizer: Any, device: str) -> None:
    ids = tokenizer("Hello", return_tensors="pt").input_ids.to(device)
    with torch.inference_mode():
        model(input_ids=ids, use_cache=False)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids
