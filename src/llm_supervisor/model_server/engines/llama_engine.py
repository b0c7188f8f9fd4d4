"""Continuous batching on llama.cpp: several sequences in one context, one ``llama_decode`` per
step, through llama.cpp's low-level batch API.

Each running request owns a sequence id (its slot) in the context's unified KV cache and a
sampler chain of its own (repetition penalty, temperature, top-k, top-p, then a seeded draw; or
greedy). One step builds one ``llama_batch``: the last token of every decoding sequence (with
its logits requested), then the prompts of newcomers, chunked to what is left of ``n_batch``
(logits only on a prompt's last token). A new request therefore joins the running batch at the
next step; a finished or cancelled one leaves at once (its KV cells are removed with
``llama_memory_seq_rm`` and its slot is free for the next request).

When the KV cache is full (``llama_decode`` returns 1), newcomers' prompts wait for cells to
free up while the running sequences go on; if even those do not fit, the running sequence holding
the most cells ends with ``length`` and the step is retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from llm_supervisor.model_server.engines.batching import (
    BatchingEngine,
    Event,
    GenerationHandle,
    finish,
)
from llm_supervisor.model_server.engines.llama_model import LlamaModel
from llm_supervisor.model_server.metrics import Metrics
from llm_supervisor.model_server.weights.loaded import LoadedModel

MIN_TEMPERATURE = 1e-4
"""Below this a temperature is sampled as greedy: logits divided by e.g. 1e-40 overflow f32 to
inf (and inf - inf = NaN in the softmax); the distribution is the argmax long before that."""


@dataclass
class _Seq:
    handle: GenerationHandle
    seq_id: int
    sampler: Any
    todo: list[int]  # prompt tokens not yet decoded
    pos: int = 0  # next position (= KV cells this sequence holds)
    last: int = -1  # token to feed at the next step once the prompt is done
    produced: int = 0
    out_index: int = -1  # index of this sequence's logits in the current batch, -1 = none
    chunk: int = 0  # prompt tokens in the current batch


class LlamaEngine(BatchingEngine):
    """Owns the llama.cpp context (through :class:`~.llama_model.LlamaModel`) and the worker."""

    name = "llama.cpp"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int,
        max_concurrent: int,
        metrics: Metrics | None = None,
        log: Any = None,
    ) -> None:
        llama: LlamaModel = loaded.model
        max_batch_size = min(max_batch_size, llama.n_seq_max)
        super().__init__(
            loaded, max_batch_size=max_batch_size, max_concurrent=max_concurrent, metrics=metrics, log=log
        )
        self.llama = llama
        self.lib = llama.lib
        self.ctx = llama.ctx
        self.memory = llama.memory
        self.n_batch = llama.n_batch
        self.n_vocab = loaded.tokenizer.n_vocab
        self._batch = self.lib.llama_batch_init(self.n_batch, 0, 1)
        self._seqs: list[_Seq] = []
        self._free_ids = list(range(max_batch_size - 1, -1, -1))
        self._eog_bias = self._make_eog_bias()

    # ------------------------------------------------------------------ samplers

    def _make_eog_bias(self) -> Any:
        ids = sorted(self.eos_ids)
        arr = (self.lib.llama_logit_bias * len(ids))()
        for i, tok in enumerate(ids):
            arr[i].token = tok
            arr[i].bias = float("-inf")
        return arr

    def _sampler(self, handle: GenerationHandle) -> Any:
        """A sampler chain in the transformers engine's order: penalty, temperature, top-k,
        top-p, seeded draw (or greedy). The prompt counts for the repetition penalty."""
        lib, p = self.lib, handle.params
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lib.llama_sampler_chain_add
        if p.ignore_eos and self.eos_ids:
            add(chain, lib.llama_sampler_init_logit_bias(self.n_vocab, len(self._eog_bias), self._eog_bias))
        if p.repetition_penalty != 1.0:
            add(
                chain,
                lib.llama_sampler_init_penalties(
                    self.n_vocab, self.llama.n_ctx, float(p.repetition_penalty), 0.0, 0.0
                ),
            )
        if p.temperature < MIN_TEMPERATURE:
            add(chain, lib.llama_sampler_init_greedy())
        else:
            add(chain, lib.llama_sampler_init_temp(float(p.temperature)))
            if p.top_k > 0:
                add(chain, lib.llama_sampler_init_top_k(int(p.top_k)))
            if p.top_p < 1.0:
                add(chain, lib.llama_sampler_init_top_p(float(p.top_p), 1))
            add(chain, lib.llama_sampler_init_dist(handle.seed & 0xFFFFFFFF))
        if p.repetition_penalty != 1.0:
            for tok in handle.prompt_ids:
                lib.llama_sampler_accept(chain, tok)
        return chain

    # ------------------------------------------------------------------ worker thread

    def _busy(self) -> bool:
        return bool(self._seqs)

    def _admit(self) -> None:
        if not self._free_ids or not self._pending:
            return
        now = time.monotonic()
        for handle in self._take_pending(len(self._free_ids)):
            handle.timing.started = now
            try:
                sampler = self._sampler(handle)
            except Exception as exc:  # answers this request only
                self._fail([handle], exc)
                continue
            self._seqs.append(_Seq(handle, self._free_ids.pop(), sampler, list(handle.prompt_ids)))
        self._batch_gauge(len(self._seqs))
        self._loop_gauges()

    def _drop_all(self) -> list[GenerationHandle]:
        handles = [s.handle for s in self._seqs]
        for seq in list(self._seqs):
            self._release_seq(seq)
        return handles

    def _release_seq(self, seq: _Seq) -> None:
        """The sequence leaves the batch: KV cells, sampler and slot are freed at once."""
        self._seqs.remove(seq)
        self.lib.llama_memory_seq_rm(self.memory, seq.seq_id, -1, -1)
        self.lib.llama_sampler_free(seq.sampler)
        self._free_ids.append(seq.seq_id)

    def _step(self) -> None:
        events: list[Event] = []
        for seq in [s for s in self._seqs if s.handle.cancelled]:
            events.append(finish(seq.handle, "done", seq.handle.cancel_reason))
            self._release_seq(seq)
        if self._seqs:
            rc = self._decode(prompts=True)
            if rc == 1 and any(s.todo for s in self._seqs) and any(not s.todo for s in self._seqs):
                rc = self._decode(prompts=False)  # no cells for the newcomers yet: they wait
            while rc == 1 and self._seqs:  # no KV cells left: the longest sequence ends
                longest = max(self._seqs, key=lambda s: (not s.todo, s.pos))
                events.append(finish(longest.handle, "done", "length"))
                self._release_seq(longest)
                rc = self._decode(prompts=True) if self._seqs else 0
            if rc not in (0, 1):
                raise RuntimeError(f"llama_decode returned {rc}")
            if self._seqs:
                self._sample(events)
        if self.metrics:
            self.metrics.generation_tokens.inc(sum(1 for e in events if e[1] == "token"))
        self._emit(events)
        self._batch_gauge(len(self._seqs))

    def _decode(self, *, prompts: bool) -> int:
        """Fill the batch (decoding sequences first, then prompt chunks unless ``prompts`` is
        false) and decode it."""
        b = self._batch
        n = 0

        def put(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            b.token[n] = token
            b.pos[n] = pos
            b.n_seq_id[n] = 1
            b.seq_id[n][0] = seq_id
            b.logits[n] = logits
            n += 1

        for seq in self._seqs:
            seq.out_index, seq.chunk = -1, 0
            if not seq.todo:
                seq.out_index = n
                put(seq.last, seq.pos, seq.seq_id, True)
        for seq in self._seqs:
            room = self.n_batch - n
            if not seq.todo or room <= 0 or not prompts:
                continue
            chunk = seq.todo[:room]
            for i, tok in enumerate(chunk):
                last = i == len(chunk) - 1 and len(chunk) == len(seq.todo)
                if last:
                    seq.out_index = n
                put(tok, seq.pos + i, seq.seq_id, last)
            seq.chunk = len(chunk)
        b.n_tokens = n
        rc = int(self.lib.llama_decode(self.ctx, b))
        if rc == 0:
            for seq in self._seqs:
                if seq.chunk:
                    seq.pos += seq.chunk
                    del seq.todo[: seq.chunk]
                elif seq.out_index >= 0:
                    seq.pos += 1
        return rc

    def _sample(self, events: list[Event]) -> None:
        lib, now = self.lib, time.monotonic()
        for seq in list(self._seqs):
            if seq.out_index < 0:
                continue  # still prefilling a long prompt
            h = seq.handle
            token = int(lib.llama_sampler_sample(seq.sampler, self.ctx, seq.out_index))
            if h.timing.first_token is None:
                h.timing.first_token = now
            if token in self.eos_ids and not h.params.ignore_eos:
                events.append(finish(h, "done", "eos"))
                self._release_seq(seq)
                continue
            events.append((h, "token", token))
            seq.produced += 1
            seq.last = token
            if seq.produced >= h.params.max_new_tokens or seq.pos + 1 >= self.loaded.max_context:
                events.append(finish(h, "done", "length"))
                self._release_seq(seq)
