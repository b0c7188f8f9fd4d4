"""The transformers engine (HF checkpoints, GPUs, bitsandbytes INT8): one worker thread runs
the model, requests reach it through the queue of :class:`~.batching.BatchingEngine`.

Continuous batching: the worker decodes one token for every active sequence per step. Between
steps it admits waiting requests (up to ``max_batch_size``): they are prefilled together and
their KV cache is merged into the running batch (left-padded), so a new request does not wait
for the current batch to finish. Finished or cancelled sequences leave the batch at the next
step. Sampling parameters (temperature, top-p, top-k, repetition penalty, seed) are per row.

The asyncio side (:class:`GenerationHandle`) receives tokens through ``call_soon_threadsafe``;
cancelling a handle (client gone) drops its row at the next step.

Failures answer every request they touch and nothing else: a row whose sampling fails gets an
``error`` event and leaves the batch (the other rows go on); a prefill that raises fails only the
requests being admitted; a forward pass of the running batch that raises fails that batch (its
rows share one tensor, so they cannot be told apart). Every ``error``/``done`` event frees the
request's in-flight slot. Should the worker thread itself end, :meth:`Engine.problem` says so and
``/api/health`` stops answering 200, so the supervisor restarts the server.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from llm_supervisor.model_server.engines.batching import (
    BatchingEngine,
    EngineError,
    Event,
    GenerationHandle,
    Overloaded,
    SamplingParams,
    ShuttingDown,
    Timing,
    finish,
)
from llm_supervisor.model_server.metrics import Metrics
from llm_supervisor.model_server.weights.loaded import LoadedModel

__all__ = [
    "Engine",
    "EngineError",
    "GenerationHandle",
    "Overloaded",
    "SamplingParams",
    "ShuttingDown",
    "Timing",
]


@dataclass
class _Row:
    handle: GenerationHandle
    generator: torch.Generator | None
    seen: list[int]
    produced: int = 0


class _Batch:
    """The running batch: KV cache, attention mask, next positions and next input tokens."""

    def __init__(
        self,
        rows: list[_Row],
        cache: Any,
        attn: torch.Tensor,
        next_pos: torch.Tensor,
        last: torch.Tensor,
    ) -> None:
        self.rows, self.cache, self.attn, self.next_pos, self.last = (
            rows,
            cache,
            attn,
            next_pos,
            last,
        )

    def __len__(self) -> int:
        return len(self.rows)


def _mergeable(cache: Any) -> bool:
    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


class Engine(BatchingEngine):
    """The transformers engine: owns the model; the queue and worker come from
    :class:`~.batching.BatchingEngine`. Create it on the event loop, then :meth:`start`."""

    name = "transformers"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int,
        max_concurrent: int,
        metrics: Metrics | None = None,
        log: Any = None,
    ) -> None:
        super().__init__(
            loaded, max_batch_size=max_batch_size, max_concurrent=max_concurrent, metrics=metrics, log=log
        )
        self.model = loaded.model
        self.device = torch.device(loaded.device)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self._eos_index = torch.tensor(sorted(self.eos_ids), dtype=torch.long)
        self._batch: _Batch | None = None
        params = inspect.signature(self.model.forward).parameters
        self._logits_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        # transformers 5.2x renamed the forward's ``past_key_values`` to ``cache``.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------------ worker thread

    @contextlib.contextmanager
    def _worker_context(self) -> Iterator[None]:
        with torch.inference_mode():
            yield

    def _busy(self) -> bool:
        return self._batch is not None

    def _drop_all(self) -> list[GenerationHandle]:
        rows = self._batch.rows if self._batch else []
        self._batch = None
        return [row.handle for row in rows]

    def _admit(self) -> None:
        """Prefill waiting requests into free batch slots."""
        if self._batch is not None and not _mergeable(self._batch.cache):
            return  # this cache type cannot be merged: wait for the batch to drain
        free = self.max_batch_size - (len(self._batch) if self._batch else 0)
        newcomers = self._take_pending(free)
        if not newcomers:
            return
        try:
            fresh = self._prefill(newcomers)
        except Exception as exc:
            # Only the newcomers ran in this forward pass; the running batch is untouched.
            self._fail(newcomers, exc)
            return
        if fresh is None:
            return
        try:
            self._batch = fresh if self._batch is None else self._merge(self._batch, fresh)
        except Exception as exc:
            self._fail([row.handle for row in fresh.rows], exc)
            raise  # the running batch may be half merged: _run fails it too
        self._batch_gauge(len(self._batch))
        self._loop_gauges()

    def _prefill(self, handles: list[GenerationHandle]) -> _Batch | None:
        now = time.monotonic()
        width = max(len(h.prompt_ids) for h in handles)
        ids = torch.full((len(handles), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(handles), width), dtype=torch.long)
        for i, h in enumerate(handles):
            n = len(h.prompt_ids)
            ids[i, width - n :] = torch.tensor(h.prompt_ids, dtype=torch.long)
            attn[i, width - n :] = 1
            h.timing.started = now
        ids, attn = ids.to(self.device), attn.to(self.device)
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(ids, attn, positions, DynamicCache(config=self.model.config))
        rows = [_Row(h, _generator(h), list(h.prompt_ids)) for h in handles]
        batch = _Batch(rows, self._cache_of(out), attn, attn.sum(-1), ids[:, -1:])
        self._sample_and_emit(batch, out.logits[:, -1, :])
        return batch if len(batch) else None

    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
        return self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: cache},
            **self._logits_kw,
        )

    def _cache_of(self, out: Any) -> Any:
        cache = getattr(out, self._cache_kw, None)
        return cache if cache is not None else getattr(out, "past_key_values", None)

    def _step(self) -> None:
        batch = self._batch
        assert batch is not None
        batch.attn = torch.cat([batch.attn, batch.attn.new_ones((len(batch), 1))], dim=1)
        out = self._forward(batch.last, batch.attn, batch.next_pos.unsqueeze(1), batch.cache)
        batch.cache = self._cache_of(out)
        batch.next_pos = batch.next_pos + 1
        self._sample_and_emit(batch, out.logits[:, -1, :])
        if not len(batch):
            self._batch = None
        self._batch_gauge(len(batch))

    def _sample_and_emit(self, batch: _Batch, logits: torch.Tensor) -> None:
        """Pick each row's next token, emit it, and drop rows that are done."""
        logits = logits.float()
        suppress = [i for i, r in enumerate(batch.rows) if r.handle.params.ignore_eos]
        if suppress and self._eos_index.numel():
            # ignore_eos: the end-of-sequence token is never chosen (like transformers'
            # min_new_tokens), so exactly max_new_tokens visible tokens come out.
            rows = torch.tensor(suppress, device=logits.device).unsqueeze(1)
            logits[rows, self._eos_index.to(logits.device)] = float("-inf")
        tokens, failures = _sample(logits, batch.rows)
        now = time.monotonic()
        events: list[Event] = []
        keep: list[int] = []
        positions = batch.next_pos.tolist()
        for i, (row, token) in enumerate(zip(batch.rows, tokens, strict=True)):
            h = row.handle
            if h.cancelled:
                events.append(finish(h, "done", h.cancel_reason))
                continue
            if i in failures:
                events.append(finish(h, "error", failures[i]))
                continue
            if h.timing.first_token is None:
                h.timing.first_token = now
            if token in self.eos_ids and not h.params.ignore_eos:
                events.append(finish(h, "done", "eos"))
                continue
            events.append((h, "token", token))
            row.produced += 1
            row.seen.append(token)
            at_limit = row.produced >= h.params.max_new_tokens
            if at_limit or positions[i] + 1 >= self.loaded.max_context:
                events.append(finish(h, "done", "length"))
            else:
                keep.append(i)
        if failures:
            if self.log:
                self.log.error("sampling_failed", requests=len(failures), error=next(iter(failures.values())))
            if self.metrics:
                self.metrics.failures.labels(err="generation").inc(len(failures))
        if self.metrics:
            self.metrics.generation_tokens.inc(sum(1 for e in events if e[1] == "token"))
        self._emit(events)
        if len(keep) != len(batch.rows):
            self._select(batch, keep)
        if keep:
            batch.last = torch.tensor([[tokens[i]] for i in keep], dtype=torch.long, device=self.device)

    def _select(self, batch: _Batch, keep: list[int]) -> None:
        """Keep only rows ``keep`` and trim padding columns no remaining row needs."""
        batch.rows = [batch.rows[i] for i in keep]
        if not keep:
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        batch.cache.batch_select_indices(index)
        batch.attn = batch.attn[index]
        batch.next_pos = batch.next_pos[index]
        if _mergeable(batch.cache):
            used = batch.attn.any(dim=0).nonzero()
            first = int(used[0]) if len(used) else 0
            if first > 0:
                batch.attn = batch.attn[:, first:]
                for layer in batch.cache.layers:
                    layer.keys = layer.keys[:, :, first:, :]
                    layer.values = layer.values[:, :, first:, :]

    def _merge(self, a: _Batch, b: _Batch) -> _Batch:
        """Concatenate two batches along the batch axis, left-padding the shorter cache."""
        if not _mergeable(b.cache):
            raise RuntimeError("cannot merge this cache type")
        ta, tb = a.attn.shape[1], b.attn.shape[1]
        width = max(ta, tb)

        def pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
            if n == 0:
                return t
            shape = list(t.shape)
            shape[dim] = n
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
            la.keys = torch.cat([pad(la.keys, width - ta, 2), pad(lb.keys, width - tb, 2)], 0)
            la.values = torch.cat([pad(la.values, width - ta, 2), pad(lb.values, width - tb, 2)], 0)
        a.attn = torch.cat([pad(a.attn, width - ta, 1), pad(b.attn, width - tb, 1)], 0)
        a.next_pos = torch.cat([a.next_pos, b.next_pos])
        a.last = torch.cat([a.last, b.last])
        a.rows = a.rows + b.rows
        return a


def _generator(handle: GenerationHandle) -> torch.Generator | None:
    if handle.params.greedy:
        return None
    gen = torch.Generator()
    gen.manual_seed(handle.seed)
    return gen


def _sample(logits: torch.Tensor, rows: list[_Row]) -> tuple[list[int], dict[int, str]]:
    """Next token per row, and the rows whose sampling failed (index → error message).

    Greedy rows take the argmax, sampling rows draw with their own seeded generator after
    repetition penalty, temperature, top-k and top-p. A failure in one row never touches the
    others.
    """
    simple = all(r.handle.params.greedy and r.handle.params.repetition_penalty == 1.0 for r in rows)
    if simple:
        return logits.argmax(dim=-1).tolist(), {}
    out: list[int] = []
    failures: dict[int, str] = {}
    for i, row in enumerate(rows):
        try:
            out.append(_sample_row(logits[i], row))
        except Exception as exc:
            out.append(-1)
            failures[i] = f"sampling failed: {type(exc).__name__}: {exc}"
    return out, failures


def _finite(scores: torch.Tensor) -> torch.Tensor:
    """NaN becomes -inf (never chosen) and +inf the largest float, so softmax stays defined."""
    big = torch.finfo(scores.dtype).max
    return torch.nan_to_num(scores, nan=float("-inf"), posinf=big, neginf=float("-inf"))


def _sample_row(logits: torch.Tensor, row: _Row) -> int:
    p = row.handle.params
    scores = logits
    if p.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(row.seen)), dtype=torch.long, device=scores.device)
        picked = scores[seen]
        scores = scores.clone()
        scores[seen] = torch.where(
            picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty
        )
    if p.greedy:
        return int(_finite(scores).argmax())
    scaled = scores / p.temperature
    if torch.isnan(scaled).any() or torch.isposinf(scaled).any():
        # Overflow: the distribution is as sharp as float allows, i.e. greedy (temperature → 0).
        return int(_finite(scores).argmax())
    scores = scaled
    if 0 < p.top_k < scores.numel():
        kth = torch.topk(scores, p.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        drop = cum - sorted_scores.softmax(-1) >= p.top_p  # keep the token crossing top_p
        drop[0] = False  # always keep the likeliest (a top_p below float32's range rounds to 0)
        scores = scores.clone()
        scores[order[drop]] = float("-inf")
    probs = scores.softmax(-1).cpu()
    return int(torch.multinomial(probs, 1, generator=row.generator))
