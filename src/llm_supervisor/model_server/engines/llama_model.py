"""Load a GGUF file with llama.cpp (llama-cpp-python's low-level ctypes API) and tokenise with
its vocabulary: no torch, no transformers.

Loading reports llama.cpp's own progress callback into ``/api/health``. A file llama.cpp cannot
load (truncated, bad header, not GGUF) becomes a :class:`~.loaded.WeightsLoadError` naming the
file and carrying llama.cpp's last error lines, so the supervisor sees the same
``weights_load_failed`` event and exit code as for a damaged safetensors checkpoint. Bytes
flipped inside tensor data load silently here too: the manifest check after loading catches them.
"""

from __future__ import annotations

import collections
import ctypes
import os
import threading
import time
from pathlib import Path
from typing import Any

from llm_supervisor.model_server.progress import LoadProgress
from llm_supervisor.model_server.weights import manifest as manifest_mod
from llm_supervisor.model_server.weights.loaded import (
    LoadedModel,
    WeightsLoadError,
    verify_against_manifest,
)

DEFAULT_N_CTX = 4096
N_BATCH = 512  # tokens per llama_decode: decode rows plus prompt chunks of newcomers
_LOG_LEVELS = {0: "none", 1: "debug", 2: "info", 3: "warning", 4: "error", 5: "cont"}
"""ggml_log_level in this llama.cpp (llama-cpp-python's own _logger.py has the older order)."""
_WARN, _ERROR, _CONT = 3, 4, 5


class GGUFLoadError(OSError):
    """llama.cpp refused the file; the message holds its last error lines."""


class _LlamaLog:
    """Receives llama.cpp's log lines (instead of raw stderr): keeps the last ones for error
    messages and forwards warnings and errors to our structured log."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=40)
        self.log: Any = None
        self._level = 1
        self._buffer = ""
        self._lock = threading.Lock()

    def __call__(self, level: int, text: bytes, _user: Any) -> None:
        if level != _CONT:
            self._level = level
        chunk = text.decode("utf-8", errors="replace") if text else ""
        with self._lock:
            self._buffer += chunk
            if "\n" not in self._buffer:
                return
            *done, self._buffer = self._buffer.split("\n")
        for line in done:
            if not line.strip():
                continue
            self.lines.append(line)
            if self.log is not None and self._level in (_WARN, _ERROR):
                name = _LOG_LEVELS.get(self._level, "info")
                getattr(self.log, name, self.log.info)("llama_cpp_log", message=line.strip())

    def last_errors(self, n: int = 3) -> str:
        picked = [ln.strip() for ln in self.lines if "error" in ln.lower() or "failed" in ln.lower()]
        return "; ".join((picked or list(self.lines))[-n:])


_llama_log = _LlamaLog()
_callback_ref: Any = None
_backend_ready = False


def _init_backend(lib: Any, log: Any) -> None:
    global _callback_ref, _backend_ready
    _llama_log.log = log
    if _backend_ready:
        return
    _callback_ref = lib.llama_log_callback(_llama_log)  # keep a reference: C holds the pointer
    lib.llama_log_set(_callback_ref, ctypes.c_void_p(0))
    lib.llama_backend_init()
    _backend_ready = True


def default_threads() -> int:
    """CPUs this process may run on (llama.cpp's own default counts all cores of the host)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def quantization_name(lib: Any, ftype: int) -> str:
    """``gguf-q4_1`` for ``LLAMA_FTYPE_MOSTLY_Q4_1`` and so on (``gguf-f32``, ``gguf-bf16``)."""
    for name in dir(lib):
        if name.startswith("LLAMA_FTYPE_") and getattr(lib, name) == ftype and name != "LLAMA_FTYPE_GUESSED":
            short = name.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
            return f"gguf-{short.lower()}"
    return f"gguf-ftype{ftype}"


class LlamaTokenizer:
    """The GGUF's own vocabulary and chat template, with the small part of the Hugging Face
    tokenizer API that the server uses (``encode``, ``decode``, ``apply_chat_template``)."""

    def __init__(self, lib: Any, model: Any) -> None:
        self._lib = lib
        self._vocab = lib.llama_model_get_vocab(model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self._vocab))
        self.bos_token_id = int(lib.llama_vocab_bos(self._vocab))
        self.eos_token_id = int(lib.llama_vocab_eos(self._vocab))
        self.bos_token = self._piece(self.bos_token_id)
        self.eos_token = self._piece(self.eos_token_id)
        template = lib.llama_model_chat_template(model, None)
        self.chat_template: str | None = template.decode("utf-8") if template else None
        self._jinja: Any = None

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def eog_ids(self) -> set[int]:
        """Every end-of-generation token (EOS, EOT, ``<|im_end|>`` ...)."""
        return {t for t in range(self.n_vocab) if self._lib.llama_vocab_is_eog(self._vocab, t)}

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids; special-token text such as ``<|im_start|>`` is parsed as the special
        token (as Hugging Face tokenizers do)."""
        data = text.encode("utf-8")
        size = len(data) + 8
        while True:
            out = (self._lib.llama_token * size)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), out, size, add_special_tokens, True)
            if n >= 0:
                return list(out[:n])
            size = -n

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; a character cut in half at the end shows as U+FFFD (the
        incremental detokeniser waits for the next token then)."""
        if not ids:
            return ""
        arr = (self._lib.llama_token * len(ids))(*ids)
        size = 16 * len(ids) + 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_detokenize(
                self._vocab, arr, len(ids), buf, size, False, not skip_special_tokens
            )
            if n >= 0:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = -n + 1

    def apply_chat_template(
        self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True, tokenize: bool = False
    ) -> str:
        """Render the GGUF's chat template as transformers renders it (sandboxed Jinja)."""
        if not self.chat_template:
            raise ValueError("the model has no chat template")
        if self._jinja is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise ValueError(message)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            self._jinja = env.from_string(self.chat_template)
        return self._jinja.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )


class LlamaModel:
    """The llama.cpp model and its one context: ``n_seq_max`` sequences share a unified KV
    cache of ``n_ctx`` cells (what continuous batching needs: any sequence may grow while
    others are short). Only the engine's worker thread may use the context."""

    def __init__(self, lib: Any, model: Any, path: Path, *, n_ctx: int, n_threads: int,
                 n_seq_max: int, n_batch: int) -> None:
        self.lib = lib
        self.model = model
        self.path = path
        self.n_threads = n_threads
        self.n_seq_max = n_seq_max
        self.n_ctx_train = int(lib.llama_model_n_ctx_train(model))
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = True
        params.no_perf = True
        self.ctx = lib.llama_init_from_model(model, params)
        if not self.ctx:
            raise MemoryError(f"llama.cpp could not create a context of {n_ctx} tokens: "
                              f"{_llama_log.last_errors()}; lower LLAMA_N_CTX")
        self.n_ctx = int(lib.llama_n_ctx(self.ctx))
        self.n_batch = int(lib.llama_n_batch(self.ctx))
        self.memory = lib.llama_get_memory(self.ctx)

    def warm_up(self, token: int) -> None:
        """One decode, so the first request does not pay for allocating compute buffers."""
        lib = self.lib
        arr = (lib.llama_token * 1)(token)
        lib.llama_decode(self.ctx, lib.llama_batch_get_one(arr, 1))
        lib.llama_memory_clear(self.memory, True)


def find_gguf(path: Path) -> Path | None:
    """The GGUF file to serve: ``path`` itself, or the only (else first, sorted) ``*.gguf`` in
    the directory ``path``, else the one its manifest lists (missing: the loader reports it)."""
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        found = sorted(p for p in path.glob("*.gguf") if p.is_file() or p.is_symlink())
        if found:
            return found[0]
        listed = sorted(n for n in _manifest_files(path) if n.endswith(".gguf"))
        return path / listed[0] if listed else None
    return None


def _manifest_files(model_dir: Path) -> list[str]:

    try:
        data = manifest_mod.read_manifest(model_dir)
    except (manifest_mod.ManifestError, OSError):
        return []
    return list(data["files"]) if data else []


def load_gguf(
    model_path: Path,
    settings: Any,
    progress: LoadProgress,
    *,
    source: dict[str, Any] | None = None,
    log: Any = None,
) -> LoadedModel:
    """Load the GGUF at (or in) ``model_path`` with llama.cpp. Raises :class:`WeightsLoadError`
    when the file is missing, unreadable or refused by llama.cpp."""
    import llama_cpp as lib

    started = time.monotonic()
    source = source or {}
    model_dir = model_path if model_path.is_dir() else model_path.parent
    gguf = find_gguf(model_path)
    if gguf is None:
        raise WeightsLoadError(str(model_path), FileNotFoundError(f"no *.gguf file in {model_path}"))
    try:
        with open(gguf, "rb") as fh:
            fh.read(4)
    except OSError as exc:
        raise WeightsLoadError(str(gguf), exc) from exc

    _init_backend(lib, log)
    progress.stage("loading_weights", 0.0, 0.9, file=gguf.name)

    def on_progress(fraction: float, _user: Any) -> bool:
        progress.update(float(fraction))
        return True

    callback = lib.llama_progress_callback(on_progress)
    params = lib.llama_model_default_params()
    params.progress_callback = callback
    params.load_mode = lib.LLAMA_LOAD_MODE_MMAP
    _llama_log.lines.clear()
    model = lib.llama_model_load_from_file(str(gguf).encode(), params)
    if not model:
        reason = _llama_log.last_errors() or "llama.cpp could not load the file"
        raise WeightsLoadError(str(gguf), GGUFLoadError(reason))

    progress.stage("verifying", 0.9, 0.95, mode=settings.verify_model)
    verify_against_manifest(model_dir, settings.verify_model, log)

    n_ctx = int(getattr(settings, "llama_n_ctx", 0) or DEFAULT_N_CTX)
    n_threads = int(getattr(settings, "llama_threads", 0) or default_threads())
    progress.stage("warming_up", 0.95, 1.0)
    llama = LlamaModel(lib, model, gguf, n_ctx=n_ctx, n_threads=n_threads,
                       n_seq_max=settings.max_batch_size,
                       n_batch=int(getattr(settings, "llama_n_batch", 0) or N_BATCH))
    tokenizer = LlamaTokenizer(lib, model)
    llama.warm_up(tokenizer.bos_token_id if tokenizer.bos_token_id >= 0 else 0)
    quant = quantization_name(lib, int(lib.llama_model_ftype(model)))
    int8_note = (
        f"not applicable: the GGUF is already quantized ({quant}); USE_INT8 only applies to "
        "the transformers engine"
        if settings.use_int8
        else None
    )
    if int8_note and log:
        log.info("int8_not_applicable", quantization=quant, engine="llama.cpp")
    return LoadedModel(
        model=llama,
        tokenizer=tokenizer,
        name=str(source.get("repo_id") or gguf.stem),
        path=model_path,
        source=source,
        device="cpu",
        dtype="float32",  # llama.cpp computes in f32 on the CPU; the weights stay quantized
        quantization=quant,
        int8_requested=settings.use_int8,
        int8_fallback_reason=int8_note,
        load_seconds=time.monotonic() - started,
        max_context=min(llama.n_ctx_train or llama.n_ctx, llama.n_ctx),
        eos_token_ids=tokenizer.eog_ids(),
        engine="llama.cpp",
        int8_applicable=False,
    )
