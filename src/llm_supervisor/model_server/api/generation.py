"""The generation adapter between the routes and an engine: prompt to token ids (raw text or the
model's chat template), admission (limits, 429, 503), and one request's token events turned into
text deltas, a finish reason, timings and metrics. Engine-agnostic: both engines' tokenizers
offer ``encode``, ``decode``, ``chat_template`` and ``apply_chat_template``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from llm_supervisor.model_server.api.http import APIError
from llm_supervisor.model_server.engines.batching import (
    BatchingEngine,
    GenerationHandle,
    Overloaded,
    SamplingParams,
    ShuttingDown,
)
from llm_supervisor.model_server.engines.detokenize import TextAssembler
from llm_supervisor.model_server.engines.stall import STALL_ERROR
from llm_supervisor.model_server.lifecycle import ServerState

OPENAI_FINISH = {
    "eos": "stop",
    "stop": "stop",
    "length": "length",
    "cancelled": "stop",
    "shutdown": "length",
}
"""Our finish reasons in OpenAI's vocabulary."""


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
        if self.error and self.error.startswith(STALL_ERROR):  # answered, not left hanging
            raise APIError(503, "engine_stalled", self.error, {"Retry-After": "5"})
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

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
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


async def encode(engine: BatchingEngine, text: str, *, special: bool) -> list[int]:
    """Token ids of ``text`` (long texts are tokenised off the event loop)."""
    tok = engine.tokenizer
    if len(text) < 4000:
        return list(tok.encode(text, add_special_tokens=special))
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: list(tok.encode(text, add_special_tokens=special)))


def templated(engine: BatchingEngine, messages: list[dict[str, str]]) -> str:
    """``messages`` through the model's chat template (a plain transcript without one)."""
    tok = engine.tokenizer
    if getattr(tok, "chat_template", None):
        try:
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja raises for unsupported role orders etc.
            raise APIError(422, "validation_error", f"chat template refused the messages: {exc}") from None
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def new_tokens(state: ServerState, value: int | None) -> int:
    """``max_length``/``max_tokens`` with the default applied and the limit enforced."""
    s = state.settings
    n = s.default_new_tokens if value is None else value
    if n > s.max_new_tokens:
        raise APIError(
            422,
            "validation_error",
            f"max_length/max_tokens {n} is above the limit of {s.max_new_tokens} (MAX_NEW_TOKENS)",
        )
    return n


def admit(state: ServerState, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle:
    """Queue a request on the engine, or answer why not (422, 429 with Retry-After, 503)."""
    engine = state.require_engine()
    s = state.settings
    max_ctx = engine.loaded.max_context
    if len(prompt_ids) > s.max_input_tokens:
        raise APIError(
            422,
            "prompt_too_long",
            f"the prompt has {len(prompt_ids)} tokens; the limit is "
            f"{s.max_input_tokens} (MAX_INPUT_TOKENS)",
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


def start(state: ServerState, prompt_ids: list[int], params: SamplingParams, stop: list[str]) -> Generation:
    """Admit a request and wrap it for the routes."""
    return Generation(state, admit(state, prompt_ids, params), stop, len(prompt_ids))


def describe_result(gen: Generation, model_name: str) -> dict[str, Any]:
    """The native API's result body (also the final SSE event)."""
    return {
        "generated_text": gen.asm.text,
        "finish_reason": gen.finish_reason,
        "model": model_name,
        "prompt_tokens": gen.prompt_tokens,
        "generated_tokens": gen.completion_tokens,
        "seed": gen.handle.seed,
        "timing": gen.timing(),
    }
