"""The model's life in the server: find it, load it in a background thread with real progress,
pick the engine, start it, and say where things stand (``/api/health``).

``ENGINE=auto`` serves a GGUF file with llama.cpp and anything else with transformers;
``ENGINE=transformers`` or ``ENGINE=llama.cpp`` insist. Neither engine's library is imported
before it is needed, so a llama.cpp server never loads torch. When loading fails because of the
model's files, the process logs one ``weights_load_failed`` event and exits with
``WEIGHTS_LOAD_FAILED``; with no usable source at all, ``model_source_failed`` and exit 1.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from llm_supervisor.core.exit_codes import WEIGHTS_LOAD_FAILED
from llm_supervisor.data import test_page
from llm_supervisor.model_server import logs
from llm_supervisor.model_server.engines import stall
from llm_supervisor.model_server.engines.batching import BatchingEngine
from llm_supervisor.model_server.errors import APIError
from llm_supervisor.model_server.metrics import Metrics
from llm_supervisor.model_server.progress import LoadProgress
from llm_supervisor.model_server.settings import ModelServerSettings
from llm_supervisor.model_server.sources.choice import (
    FORMAT_GGUF,
    ModelSourceError,
    ResolvedModel,
    model_format,
    resolve_model,
)
from llm_supervisor.model_server.weights.loaded import LoadedModel, WeightsLoadError

MODEL_SOURCE_FAILED = 1
ENGINE_LLAMA_CPP = "llama.cpp"
ENGINE_TRANSFORMERS = "transformers"
_FALLBACK_PAGE = "<!doctype html><title>llm model server</title><p>See /api/health.</p>"
_STAGE_SPANS = {"downloading": 0.8, "converting": 0.85, "copying": 0.3}
"""Share of the progress bar each fetching stage owns; loading gets the rest."""


def pick_engine(setting: str, model_path: Path) -> str:
    """The engine for the model at ``model_path`` under ``ENGINE=setting``."""
    fmt = model_format(model_path)
    if setting == "auto":
        return ENGINE_LLAMA_CPP if fmt == FORMAT_GGUF else ENGINE_TRANSFORMERS
    if setting == ENGINE_LLAMA_CPP and fmt != FORMAT_GGUF:
        raise ModelSourceError(
            f"ENGINE=llama.cpp needs a GGUF file, but {model_path} holds a transformers checkpoint; "
            "set ENGINE=auto (or transformers), or point MODEL_PATH at a .gguf file or an empty directory"
        )
    if setting == ENGINE_TRANSFORMERS and fmt == FORMAT_GGUF:
        raise ModelSourceError(
            f"ENGINE=transformers cannot serve the GGUF in {model_path} directly; set ENGINE=auto "
            "(llama.cpp), or point MODEL_PATH at an empty directory to convert the offline GGUF"
        )
    return setting


class ServerState:
    """Everything the handlers share: settings, load progress, metrics, and the engine once
    the model is ready."""

    def __init__(self, settings: ModelServerSettings) -> None:
        self.settings = settings
        self.progress = LoadProgress()
        self.metrics = Metrics()
        self.log = logs.get_logger()
        self.engine: BatchingEngine | None = None
        self.loaded: LoadedModel | None = None
        self.stopping = False
        # SIGUSR1 (a rolling restart): still serving, but the gateway must send nothing new.
        self.draining = False
        self.started = time.monotonic()
        self.created = int(time.time())
        self.loader: threading.Thread | None = None
        self.page = read_page(settings.test_page)

    # -------------------------------------------------------------- loading

    def start_loading(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loader = threading.Thread(target=self._load, args=(loop,), name="model-loader", daemon=True)
        self.loader.start()

    def _resolve(self) -> ResolvedModel:
        s, progress = self.settings, self.progress

        def on_stage(name: str) -> None:
            progress.stage(name, 0.0, _STAGE_SPANS[name])

        def on_progress(fraction: float, **detail: Any) -> None:
            progress.update(fraction, **detail)
            self.metrics.loading_progress.set(progress.snapshot().progress)

        resolved = resolve_model(
            s.model_path,
            s.model_id,
            hub_timeout=s.hub_timeout,
            on_stage=on_stage,
            on_progress=on_progress,
            log=self.log,
            engine=s.engine,
            gguf_file=s.gguf_file,
        )
        if resolved.origin != "local":
            stage = {"hub": "downloading", "gguf": "converting", "package": "copying"}[resolved.origin]
            progress.scope(_STAGE_SPANS[stage], 1.0)
        return resolved

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        s, log = self.settings, self.log
        try:
            resolved = self._resolve()
            engine = pick_engine(s.engine, resolved.path)
            log.info(
                "model_source",
                origin=resolved.origin,
                model_path=str(resolved.path),
                source=resolved.source,
                engine=engine,
            )
            if engine == ENGINE_LLAMA_CPP:
                from llm_supervisor.model_server.engines.llama_model import load_gguf

                loaded = load_gguf(resolved.path, s, self.progress, source=resolved.source, log=log)
            else:
                from llm_supervisor.model_server.weights.loader import load_model

                loaded = load_model(resolved.path, s, self.progress, source=resolved.source, log=log)
        except WeightsLoadError as exc:
            self._die(
                WEIGHTS_LOAD_FAILED,
                "weights_load_failed",
                file=exc.file,
                model_path=str(s.model_path),
                error_type=exc.error_type,
                error=str(exc.error),
                problems=exc.problems or None,
                library_error=(
                    f"{type(exc.library_error).__name__}: {exc.library_error}" if exc.library_error else None
                ),
            )
            return
        except Exception as exc:  # no usable source, or an unexpected crash while loading
            if not isinstance(exc, ModelSourceError):
                log.exception("model_load_crashed")
            self._die(
                MODEL_SOURCE_FAILED,
                "model_source_failed" if isinstance(exc, ModelSourceError) else "model_load_failed",
                model_path=str(s.model_path),
                error_type=type(exc).__name__,
                error=str(exc),
            )
            return
        loop.call_soon_threadsafe(self._ready, loaded, loop)

    def _ready(self, loaded: LoadedModel, loop: asyncio.AbstractEventLoop) -> None:
        if self.stopping:
            return
        s = self.settings
        self.loaded = loaded
        engine_cls: type[BatchingEngine]
        if loaded.engine == ENGINE_LLAMA_CPP:
            from llm_supervisor.model_server.engines.llama_engine import LlamaEngine as engine_cls
        else:
            from llm_supervisor.model_server.engines.transformers_engine import Engine as engine_cls
        self.engine = engine_cls(
            loaded,
            max_batch_size=s.max_batch_size,
            max_concurrent=s.max_concurrent_requests,
            metrics=self.metrics,
            log=self.log,
        )
        self.engine.start(loop)
        stall.watch(self.engine, s.stall_timeout_sec, self.log)  # StallTimeoutSec=
        self.progress.ready()
        total = time.monotonic() - self.started
        self.metrics.load_seconds.set(total)
        self.metrics.loading_progress.set(1.0)
        self.log.info(
            "model_ready",
            model=loaded.name,
            model_path=str(loaded.path),
            engine=loaded.engine,
            device=loaded.device,
            dtype=loaded.dtype,
            quantization=loaded.quantization,
            int8_requested=loaded.int8_requested,
            int8_fallback_reason=loaded.int8_fallback_reason,
            load_seconds=round(loaded.load_seconds, 3),
            ready_seconds=round(total, 3),
        )

    def _die(self, code: int, event: str, **fields: Any) -> None:
        """Log one event and exit at once: the supervisor watches for the exit code."""
        self.progress.fail({"type": event, **{k: v for k, v in fields.items() if v is not None}})
        self.log.error(event, exit_code=code, **{k: v for k, v in fields.items() if v is not None})
        logs.flush()
        os._exit(code)

    def start_draining(self) -> None:
        """SIGUSR1: say ``draining`` in /api/health from now on (rolling restarts)."""
        self.draining = True
        self.log.info("draining", inflight=self.engine.inflight if self.engine else 0)

    # -------------------------------------------------------------- for the handlers

    def require_engine(self) -> BatchingEngine:
        if self.stopping:
            raise APIError(503, "shutting_down", "the server is shutting down", {"Retry-After": "5"})
        if self.engine is None:
            snap = self.progress.snapshot()
            raise APIError(
                503,
                "model_loading",
                f"the model is loading ({snap.stage}, {snap.progress:.0%})",
                {"Retry-After": "2"},
            )
        return self.engine

    def health(self) -> tuple[int, dict[str, Any]]:
        snap = self.progress.snapshot()
        uptime = round(time.monotonic() - self.started, 3)
        if self.stopping:
            return 503, {"status": "stopping", "uptime_s": uptime}
        if snap.status == "error":
            return 503, {
                "status": "error",
                "stage": snap.stage,
                "error": snap.error,
                "uptime_s": uptime,
            }
        problem = self.engine.problem() if self.engine is not None else None
        if problem is not None:
            # The worker thread is gone: nothing would ever answer, so say so and get restarted.
            return 503, {"status": "error", "error": problem, "uptime_s": uptime}
        if self.engine is None or self.loaded is None:
            return 503, {
                "status": "loading",
                "progress": snap.progress,
                "stage": snap.stage,
                "detail": snap.detail,
                "uptime_s": uptime,
            }
        m, e = self.loaded, self.engine
        return 200, {
            # "draining" stays 200 (the supervisor must not restart a server finishing its
            # requests); the gateway's check of replicas expects "ready" (gateway/caddy.py).
            "status": "draining" if self.draining else "ready",
            "model": m.name,
            "model_path": str(m.path),
            "source": m.source.get("kind", "local"),
            "engine": m.engine,
            "device": m.device,
            "dtype": m.dtype,
            "quantization": m.quantization,
            "int8_requested": m.int8_requested,
            "int8_applicable": m.int8_applicable,
            "int8_fallback_reason": m.int8_fallback_reason,
            "load_seconds": round(m.load_seconds, 3),
            "uptime_s": uptime,
            "max_batch_size": e.max_batch_size,
            "max_concurrent_requests": e.max_concurrent,
            "max_input_tokens": self.settings.max_input_tokens,
            "max_new_tokens": self.settings.max_new_tokens,
            "max_context": m.max_context,
            "queued": e.queued,
            "running": e.running,
            "inflight": e.inflight,
        }


def read_page(override: Path | None) -> str:
    """The HTML test page served at ``/``."""
    if override:
        try:
            return override.read_text(encoding="utf-8")
        except OSError:
            pass
    try:
        return test_page()  # package data: src/llm_supervisor/data/web/test_llm.html
    except OSError:
        return _FALLBACK_PAGE
