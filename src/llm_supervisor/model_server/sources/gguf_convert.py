"""Convert the offline GGUF to a dense safetensors checkpoint once, for ``ENGINE=transformers``
(torch and transformers are imported only when a conversion runs)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llm_supervisor.model_server.progress import CountingBar
from llm_supervisor.model_server.sources.offline import (
    OFFLINE_PACKAGE,
    OFFLINE_REPO_ID,
    offline_gguf_or_fail,
    package_version,
)
from llm_supervisor.model_server.sources.staging import install_dir, staging_dir
from llm_supervisor.model_server.sources.types import ProgressFn
from llm_supervisor.model_server.weights import manifest as manifest_mod

_convert_lock = threading.Lock()


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
    gguf = offline_gguf_or_fail(gguf_path)
    torch_dtype = getattr(torch, dtype)
    report = on_progress or (lambda *_a, **_k: None)
    if log:
        log.info("gguf_convert_start", gguf=str(gguf), dest=str(dest), dtype=dtype)
    staging = staging_dir(Path(dest))
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
            "package": f"{OFFLINE_PACKAGE}=={package_version(OFFLINE_PACKAGE)}",
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

    def factory(*args: Any, **kwargs: Any) -> CountingBar:
        kwargs.pop("disable", None)
        return CountingBar(*args, on_update=lambda b: callback(b.n / (b.total or 1)), **kwargs)

    gguf_utils.tqdm = factory
    try:
        yield
    finally:
        gguf_utils.tqdm = original
