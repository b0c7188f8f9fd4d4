"""The OpenAI-compatible API, a Sanic Blueprint under ``/v1``: ``GET /v1/models``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (streaming included, with
``stream_options.include_usage``). The official ``openai`` client works against it unchanged."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from llm_supervisor.model_server.api.generation import (
    OPENAI_FINISH,
    Generation,
    encode,
    new_tokens,
    start,
    templated,
)
from llm_supervisor.model_server.api.http import (
    error_body,
    open_event_stream,
    read_json,
    sse,
    validate,
)
from llm_supervisor.model_server.api.schemas import ChatRequest, CompletionRequest, stop_list
from llm_supervisor.model_server.engines.batching import SamplingParams
from llm_supervisor.model_server.lifecycle import ServerState

openai_api = Blueprint("openai_api", url_prefix="/v1")

Chunk = Callable[..., Any]
"""``chunk(text, finish, first=False)``: one streamed object (``None``: send nothing)."""


def _state(request: Request) -> ServerState:
    return request.app.ctx.state


def _params(
    state: ServerState, body: CompletionRequest | ChatRequest, max_tokens: int | None
) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=new_tokens(state, max_tokens),
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        repetition_penalty=body.repetition_penalty or 1.0,
        seed=body.seed,
        ignore_eos=body.ignore_eos,
    )


def _finish(gen: Generation) -> str:
    return OPENAI_FINISH.get(gen.finish_reason, "stop")


async def _stream(request: Request, gen: Generation, chunk: Chunk, include_usage: bool) -> None:
    try:  # the client may be gone before deltas() starts: its slot must still be freed
        response = await open_event_stream(request)
        first = chunk(None, None, first=True)
        if first is not None:
            await response.send(sse(first))
        async for delta in gen.deltas():
            await response.send(sse(chunk(delta, None)))
        if gen.error:
            await response.send(sse(error_body("generation_failed", gen.error)))
        else:
            await response.send(sse(chunk(None, _finish(gen))))
            if include_usage:
                final = chunk(None, None)
                final["choices"], final["usage"] = [], gen.usage()
                await response.send(sse(final))
        await response.send(sse("[DONE]"))
        await response.eof()
    finally:
        gen.handle.cancel()


@openai_api.get("/models")
async def models(request: Request) -> HTTPResponse:
    state = _state(request)
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


@openai_api.post("/completions")
async def completions(request: Request) -> HTTPResponse | None:
    state = _state(request)
    body = validate(CompletionRequest, read_json(request))
    engine = state.require_engine()
    params = _params(state, body, body.max_tokens)
    prompt_ids = await encode(engine, body.prompt_text, special=True)
    gen = start(state, prompt_ids, params, stop_list(body.stop))
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
        await _stream(request, gen, chunk, bool(body.stream_options and body.stream_options.include_usage))
        return None
    text = await gen.run()
    out = chunk(text, _finish(gen))
    out["usage"] = gen.usage()
    return json_response(out)


@openai_api.post("/chat/completions")
async def chat_completions(request: Request) -> HTTPResponse | None:
    state = _state(request)
    body = validate(ChatRequest, read_json(request))
    engine = state.require_engine()
    params = _params(state, body, body.max_completion_tokens or body.max_tokens)
    messages = [{"role": m.role, "content": m.text} for m in body.messages]
    prompt_ids = await encode(engine, templated(engine, messages), special=False)
    gen = start(state, prompt_ids, params, stop_list(body.stop))
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
        await _stream(request, gen, chunk, bool(body.stream_options and body.stream_options.include_usage))
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
                    "finish_reason": _finish(gen),
                }
            ],
            "usage": gen.usage(),
        }
    )
