"""The native API (the original stack's contract and our additions): the test page, health,
Prometheus metrics and ``POST /api/generate`` (JSON or server-sent events)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html, raw
from sanic.response import json as json_response

from llm_supervisor.model_server.api.generation import (
    describe_result,
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
from llm_supervisor.model_server.api.schemas import GenerateRequest, stop_list
from llm_supervisor.model_server.engines.batching import SamplingParams
from llm_supervisor.model_server.lifecycle import ServerState

native_api = Blueprint("native_api")


def _state(request: Request) -> ServerState:
    return request.app.ctx.state


@native_api.get("/")
async def index(request: Request) -> HTTPResponse:
    return html(_state(request).page)


@native_api.get("/api/health")
async def health(request: Request) -> HTTPResponse:
    status, body = _state(request).health()
    if request.args.get("require") == "ready" and body.get("status") != "ready":
        status = 503  # the gateway's check (Traefik cannot match a body): draining leaves rotation
    return json_response(body, status=status)


@native_api.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    state = _state(request)
    if state.engine is not None:
        state.metrics.queue_size.set(state.engine.queued)
    return raw(state.metrics.render(), content_type=state.metrics.content_type)


@native_api.post("/api/generate")
async def generate(request: Request) -> HTTPResponse | None:
    state = _state(request)
    body = validate(GenerateRequest, read_json(request))
    engine = state.require_engine()
    params = SamplingParams(
        max_new_tokens=new_tokens(state, body.max_length),
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        repetition_penalty=body.repetition_penalty,
        seed=body.seed,
        ignore_eos=body.ignore_eos,
    )
    if body.chat:
        text = templated(engine, [{"role": "user", "content": body.prompt}])
        prompt_ids = await encode(engine, text, special=False)
    else:
        prompt_ids = await encode(engine, body.prompt, special=True)
    gen = start(state, prompt_ids, params, stop_list(body.stop))
    name = engine.loaded.name

    if not body.stream:
        await gen.run()
        return json_response(describe_result(gen, name))
    try:  # the client may be gone before deltas() starts: its slot must still be freed
        response = await open_event_stream(request)
        # A comment line sends the headers now, even while the request waits for a batch slot.
        await response.send(": accepted\n\n")
        async for delta in gen.deltas():
            await response.send(sse({"type": "token", "text": delta}))
        if gen.error:
            await response.send(sse({"type": "error", **error_body("generation_failed", gen.error)}))
        else:
            await response.send(sse({"type": "done", **describe_result(gen, name)}))
        await response.eof()
    finally:
        gen.handle.cancel()
    return None
