"""The Sanic application: health, generation (native and OpenAI-compatible), metrics, test page.

The server answers HTTP from the first second; the model loads in a background thread and
``/api/health`` reports its real progress. When loading fails because of the model's files, the
process logs one ``weights_load_failed`` event and exits with ``WEIGHTS_LOAD_FAILED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, html, raw
from sanic.response import json as json_response

from ..exit_codes import WEIGHTS_LOAD_FAILED
from . import logs
from .detokenize import TextAssembler
from .engine import Engine, GenerationHandle, Overloaded, SamplingParams, ShuttingDown
from .guard import Refusal, RequestGuard
from .loader import LoadedModel, WeightsLoadError, load_model
from .metrics import Metrics
from .progress import LoadProgress
from .schemas import (
    ChatRequest,
    CompletionRequest,
    GenerateRequest,
    describe,
    stop_list,
)
from .settings import ModelServerSettings
from .sources import ModelSourceError, resolve_model

MODEL_SOURCE_FAILED = 1
_REPO_ROOT = Path(__file__).resolve().parents[2]
_FALLBACK_PAGE = "<!doctype html><title>llm model server</title><p>See /api/health.</p>"


class APIError(SanicException):
    """An error answered as ``{"error": {"type", "message"}}``."""

    def __init__(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, status_code=status, headers=headers)
        self.error_type = error_type


_STATUS_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


class ServerState:
    """Everything the handlers share: settings, load progress, metrics, and the engine once
    the model is ready."""

    def __init__(self, settings: ModelServerSettings) -> None:
        self.settings = settings
        self.progress = LoadProgress()
        self.metrics = Metrics()
        self.log = logs.get_logger()
        self.engine: Engine | None = None
        self.loaded: LoadedModel | None = None
        self.stopping = False
        self.started = time.monotonic()
        self.created = int(time.time())
        self.loader: threading.Thread | None = None
        self.page = _read_page(settings.test_page)

    # -------------------------------------------------------------- loading

    def start_loading(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loader = threading.Thread(target=self._load, args=(loop,), name="model-loader", daemon=True)
        self.loader.start()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        s, progress, log = self.settings, self.progress, self.log
        stage_spans = {"downloading": 0.8, "converting": 0.85}

        def on_stage(name: str) -> None:
            progress.stage(name, 0.0, stage_spans[name])

        def on_progress(fraction: float, **detail: Any) -> None:
            progress.update(fraction, **detail)
            self.metrics.loading_progress.set(progress.snapshot().progress)

        try:
            resolved = resolve_model(
                s.model_path,
                s.model_id,
                hub_timeout=s.hub_timeout,
                on_stage=on_stage,
                on_progress=on_progress,
                log=log,
            )
            if resolved.origin != "local":
                progress.scope(stage_spans["downloading" if resolved.origin == "hub" else "converting"], 1.0)
            log.info(
                "model_source",
                origin=resolved.origin,
                model_path=str(resolved.path),
                source=resolved.source,
            )
            loaded = load_model(resolved.path, s, progress, source=resolved.source, log=log)
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
        self.engine = Engine(
            loaded,
            max_batch_size=s.max_batch_size,
            max_concurrent=s.max_concurrent_requests,
            metrics=self.metrics,
            log=self.log,
        )
        self.engine.start(loop)
        self.progress.ready()
        total = time.monotonic() - self.started
        self.metrics.load_seconds.set(total)
        self.metrics.loading_progress.set(1.0)
        self.log.info(
            "model_ready",
            model=loaded.name,
            model_path=str(loaded.path),
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

    # -------------------------------------------------------------- helpers

    def require_engine(self) -> Engine:
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
            "status": "ready",
            "model": m.name,
            "model_path": str(m.path),
            "source": m.source.get("kind", "local"),
            "device": m.device,
            "dtype": m.dtype,
            "quantization": m.quantization,
            "int8_requested": m.int8_requested,
            "int8_fallback_reason": m.int8_fallback_reason,
            "load_seconds": round(m.load_seconds, 3),
            "uptime_s": uptime,
            "max_batch_size": e.max_batch_size,
            "max_concurrent_requests": e.max_concurrent,
            "max_input_tokens": self.settings.max_input_tokens,
            "max_new_tokens": self.settings.max_new_tokens,
            "queued": e.queued,
            "running": e.running,
            "inflight": e.inflight,
        }


def _read_page(override: Path | None) -> str:
    candidates = [override] if override else []
    candidates += [
        Path(__file__).with_name("test_llm.html"),
        _REPO_ROOT / "packaging" / "web" / "test_llm.html",
    ]
    for path in candidates:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, TypeError):
            continue
    return _FALLBACK_PAGE


def _read_json(request: Request) -> Any:
    if not request.body:
        raise APIError(400, "invalid_json", "the request body is empty; expected a JSON object")
    try:
        # UTF-8 only (RFC 8259): json.loads(bytes) would also guess UTF-16 and UTF-32.
        return json.loads(request.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "the request body nests too deeply") from None


def _validate(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise APIError(422, "validation_error", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, "validation_error", describe(exc)) from None


def _no_delay(request: Request) -> None:
    """Disable Nagle's algorithm on a streaming connection.

    Measured here: without it, each small SSE write after the first waited for the client's
    delayed ACK (~40 ms), so the first token arrived 40 ms late.
    """
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _sse(data: Any) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


_OPENAI_FINISH = {
    "eos": "stop",
    "stop": "stop",
    "length": "length",
    "cancelled": "stop",
    "shutdown": "length",
}


class Generation:
    """One admitted request: turns engine events into text deltas and a result."""

    def __init__(
        self, state: ServerState, handle: GenerationHandle, stop: list[str], prompt_tokens: int
    ) -> None:
        self.state = state
        self.handle = handle
        self.asm = TextAssembler(state.engine.tokenizer if state.engine else None, stop)
        self.prompt_tokens = prompt_tokens
        self.error: str | None = None

    async def deltas(self) -> AsyncIterator[str]:
        """Text as it becomes final. Stops generation when the consumer goes away."""
        try:
            async for kind, value in self.handle.events():
                if kind == "token":
                    delta = self.asm.add(value)
                    if self.asm.stopped:
                        self.handle.cancel("stop")
                    if delta:
                        yield delta
                elif kind == "error":
                    self.error = str(value)
                else:
                    delta = self.asm.finish()
                    if delta:
                        yield delta
        finally:
            self.handle.cancel()
            self._observe()

    async def run(self) -> str:
        async for _ in self.deltas():
            pass
        if self.error:
            raise APIError(500, "generation_failed", self.error)
        return self.asm.text

    @property
    def finish_reason(self) -> str:
        if self.asm.stopped:
            return "stop"
        return self.handle.finish_reason or "cancelled"

    @property
    def completion_tokens(self) -> int:
        return self.handle.completion_tokens

    def timing(self) -> dict[str, float | None]:
        t = self.handle.timing
        end = t.finished or time.monotonic()
        gen_time = end - t.first_token if t.first_token else None
        n = self.completion_tokens
        return {
            "queue_s": _r(t.started - t.enqueued) if t.started else None,
            "time_to_first_token_s": _r(t.first_token - t.enqueued) if t.first_token else None,
            "total_s": _r(end - t.enqueued),
            "tokens_per_s": _r(n / (end - t.enqueued)) if n and end > t.enqueued else None,
            "decode_tokens_per_s": _r((n - 1) / gen_time) if gen_time and n > 1 else None,
        }

    def _observe(self) -> None:
        m, t = self.state.metrics, self.handle.timing
        if t.first_token is not None:
            m.ttft.observe(t.first_token - t.enqueued)
        if t.finished is not None:
            m.request_duration.observe(t.finished - t.enqueued)
            if t.first_token is not None and self.completion_tokens > 1:
                m.time_per_token.observe((t.finished - t.first_token) / (self.completion_tokens - 1))
        m.prompt_tokens.inc(self.prompt_tokens)


def _r(x: float) -> float:
    return round(x, 4)


async def _encode(engine: Engine, text: str, *, special: bool) -> list[int]:
    tok = engine.tokenizer
    if len(text) < 4000:
        return tok(text, add_special_tokens=special).input_ids
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: tok(text, add_special_tokens=special).input_ids)


def _chat_prompt(engine: Engine, req: ChatRequest) -> str:
    return _templated(engine, [{"role": m.role, "content": m.text} for m in req.messages])


def _templated(engine: Engine, messages: list[dict[str, str]]) -> str:
    tok = engine.tokenizer
    if getattr(tok, "chat_template", None):
        try:
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja raises for unsupported role orders etc.
            raise APIError(422, "validation_error", f"chat template refused the messages: {exc}") from None
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def create_app(settings: ModelServerSettings) -> Sanic:
    """Build the Sanic app. Loading starts once the server listens."""
    app = Sanic("llm_model_server", configure_logging=False)
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    app.config.RESPONSE_TIMEOUT = 3600
    app.config.REQUEST_TIMEOUT = 60
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 2.0
    app.config.KEEP_ALIVE_TIMEOUT = 30
    app.config.NOISY_EXCEPTIONS = False
    # With uvloop, a SIGTERM arriving while the loader thread runs was lost (seen with uvloop
    # 0.23); the standard asyncio loop handles it, and the loop is not our bottleneck.
    app.config.USE_UVLOOP = False
    state = ServerState(settings)
    app.ctx.state = state
    guard = RequestGuard(settings)

    @app.after_server_start
    async def _start_loading(app: Sanic) -> None:
        state.log.info(
            "listening",
            host=settings.host,
            port=settings.port,
            pid=os.getpid(),
            model_path=str(settings.model_path),
            use_int8=settings.use_int8,
        )
        state.start_loading(asyncio.get_running_loop())

    @app.before_server_stop
    async def _drain(app: Sanic) -> None:
        state.stopping = True
        state.log.info(
            "shutting_down",
            inflight=state.engine.inflight if state.engine else 0,
            grace_s=settings.shutdown_timeout,
        )
        if state.engine is not None:
            await state.engine.shutdown(settings.shutdown_timeout)

    @app.on_request
    async def _guard(request: Request) -> None:
        """Host allow-list on every route; the browser rule on the POST (JSON) routes."""
        host = request.headers.get("host")
        try:
            guard.check_host(host)
            if request.method == "POST":
                guard.check_post(request.headers.get("content-type"), request.headers.get("origin"), host)
        except Refusal as exc:
            raise APIError(exc.status, exc.error_type, str(exc)) from None

    @app.on_response
    async def _count(request: Request, response: HTTPResponse) -> None:
        route = request.route.path if request.route else "unmatched"
        state.metrics.requests.labels(route="/" + route.lstrip("/"), status=str(response.status)).inc()

    @app.exception(Exception)
    async def _error(request: Request, exc: Exception) -> HTTPResponse:
        if isinstance(exc, APIError):
            status, etype = exc.status_code, exc.error_type
        elif isinstance(exc, SanicException):
            status = exc.status_code
            etype = _STATUS_TYPES.get(status, "http_error")
        else:
            state.log.exception("unhandled_error", path=request.path)
            status, etype = 500, "internal_error"
        if status >= 500:
            state.metrics.failures.labels(err=etype).inc()
        headers = dict(getattr(exc, "headers", None) or {})
        return json_response(error_body(etype, str(exc) or etype), status=status, headers=headers)

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return html(state.page)

    @app.get("/api/health")
    async def health(request: Request) -> HTTPResponse:
        status, body = state.health()
        return json_response(body, status=status)

    @app.get("/metrics")
    async def metrics(request: Request) -> HTTPResponse:
        if state.engine is not None:
            state.metrics.queue_size.set(state.engine.queued)
        return raw(state.metrics.render(), content_type=state.metrics.content_type)

    def admit(prompt_ids: list[int], params: SamplingParams) -> GenerationHandle:
        engine = state.require_engine()
        max_ctx = engine.loaded.max_context
        if len(prompt_ids) > settings.max_input_tokens:
            raise APIError(
                422,
                "prompt_too_long",
                f"the prompt has {len(prompt_ids)} tokens; the limit is "
                f"{settings.max_input_tokens} (MAX_INPUT_TOKENS)",
            )
        if len(prompt_ids) >= max_ctx:
            raise APIError(
                422,
                "prompt_too_long",
                f"the prompt has {len(prompt_ids)} tokens; the model's context is {max_ctx}",
            )
        if not prompt_ids:
            raise APIError(422, "validation_error", "the prompt encodes to no tokens")
        try:
            return engine.submit(prompt_ids, params)
        except Overloaded as exc:
            state.metrics.failures.labels(err="overloaded").inc()
            raise APIError(429, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except ShuttingDown as exc:
            raise APIError(503, "shutting_down", str(exc), {"Retry-After": "5"}) from None

    def new_tokens(value: int | None) -> int:
        n = settings.default_new_tokens if value is None else value
        if n > settings.max_new_tokens:
            raise APIError(
                422,
                "validation_error",
                f"max_length/max_tokens {n} is above the limit of {settings.max_new_tokens} (MAX_NEW_TOKENS)",
            )
        return n

    @app.post("/api/generate")
    async def generate(request: Request) -> HTTPResponse | None:
        body = _validate(GenerateRequest, _read_json(request))
        engine = state.require_engine()
        params = SamplingParams(
            max_new_tokens=new_tokens(body.max_length),
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            repetition_penalty=body.repetition_penalty,
            seed=body.seed,
            ignore_eos=body.ignore_eos,
        )
        if body.chat:
            text = _templated(engine, [{"role": "user", "content": body.prompt}])
            prompt_ids = await _encode(engine, text, special=False)
        else:
            prompt_ids = await _encode(engine, body.prompt, special=True)
        gen = Generation(state, admit(prompt_ids, params), stop_list(body.stop), len(prompt_ids))

        def result(text: str) -> dict[str, Any]:
            return {
                "generated_text": text,
                "finish_reason": gen.finish_reason,
                "model": engine.loaded.name,
                "prompt_tokens": gen.prompt_tokens,
                "generated_tokens": gen.completion_tokens,
                "seed": gen.handle.seed,
                "timing": gen.timing(),
            }

        if not body.stream:
            return json_response(result(await gen.run()))
        try:  # the client may be gone before deltas() starts: its slot must still be freed
            _no_delay(request)
            response = await request.respond(
                content_type="text/event-stream; charset=utf-8",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            # A comment line sends the headers now, even while the request waits for a batch slot.
            await response.send(": accepted\n\n")
            async for delta in gen.deltas():
                await response.send(_sse({"type": "token", "text": delta}))
            if gen.error:
                await response.send(_sse({"type": "error", **error_body("generation_failed", gen.error)}))
            else:
                await response.send(_sse({"type": "done", **result(gen.asm.text)}))
            await response.eof()
        finally:
            gen.handle.cancel()
        return None

    @app.get("/v1/models")
    async def models(request: Request) -> HTTPResponse:
        engine = state.require_engine()
        return json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": engine.loaded.name,
                        "object": "model",
                        "created": state.created,
                        "owned_by": "llm-supervisord",
                    }
                ],
            }
        )

    def openai_params(body: CompletionRequest | ChatRequest, max_tokens: int | None) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=new_tokens(max_tokens),
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=body.top_k or 0,
            repetition_penalty=body.repetition_penalty or 1.0,
            seed=body.seed,
            ignore_eos=body.ignore_eos,
        )

    def usage(gen: Generation) -> dict[str, int]:
        return {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens,
        }

    async def openai_stream(request: Request, gen: Generation, chunk: Any, include_usage: bool) -> None:
        try:  # the client may be gone before deltas() starts: its slot must still be freed
            await _openai_stream(request, gen, chunk, include_usage)
        finally:
            gen.handle.cancel()

    async def _openai_stream(request: Request, gen: Generation, chunk: Any, include_usage: bool) -> None:
        _no_delay(request)
        response = await request.respond(
            content_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        first = chunk(None, None, first=True)
        if first is not None:
            await response.send(_sse(first))
        async for delta in gen.deltas():
            await response.send(_sse(chunk(delta, None)))
        if gen.error:
            await response.send(_sse(error_body("generation_failed", gen.error)))
        else:
            await response.send(_sse(chunk(None, _OPENAI_FINISH.get(gen.finish_reason, "stop"))))
            if include_usage:
                final = chunk(None, None)
                final["choices"], final["usage"] = [], usage(gen)
                await response.send(_sse(final))
        await response.send(_sse("[DONE]"))
        await response.eof()

    @app.post("/v1/completions")
    async def completions(request: Request) -> HTTPResponse | None:
        body = _validate(CompletionRequest, _read_json(request))
        engine = state.require_engine()
        params = openai_params(body, body.max_tokens)
        prompt_ids = await _encode(engine, body.prompt_text, special=True)
        gen = Generation(state, admit(prompt_ids, params), stop_list(body.stop), len(prompt_ids))
        cid, created, name = f"cmpl-{uuid.uuid4().hex}", int(time.time()), engine.loaded.name

        def chunk(text: str | None, finish: str | None, first: bool = False) -> Any:
            if first:
                return None
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}],
            }

        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            await openai_stream(request, gen, chunk, include)
            return None
        text = await gen.run()
        out = chunk(text, _OPENAI_FINISH.get(gen.finish_reason, "stop"))
        out["usage"] = usage(gen)
        return json_response(out)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> HTTPResponse | None:
        body = _validate(ChatRequest, _read_json(request))
        engine = state.require_engine()
        params = openai_params(body, body.max_completion_tokens or body.max_tokens)
        prompt_ids = await _encode(engine, _chat_prompt(engine, body), special=False)
        gen = Generation(state, admit(prompt_ids, params), stop_list(body.stop), len(prompt_ids))
        cid, created, name = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), engine.loaded.name

        def chunk(text: str | None, finish: str | None, first: bool = False) -> Any:
            delta: dict[str, str] = {}
            if first:
                delta = {"role": "assistant", "content": ""}
            elif text is not None:
                delta = {"content": text}
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            await openai_stream(request, gen, chunk, include)
            return None
        text = await gen.run()
        return json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": _OPENAI_FINISH.get(gen.finish_reason, "stop"),
                    }
                ],
                "usage": usage(gen),
            }
        )

    return app
