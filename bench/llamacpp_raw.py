"""Baseline worker for bench_llamacpp.py: raw llama.cpp in a process of its own (so that its
memory can be measured alone). Reads one JSON command per line on stdin, answers one JSON line.

    --mode lowlevel   llama.cpp's C API through llama-cpp-python's ctypes bindings: one context,
                      n_seq_max sequences, llama_batch, greedy sampler chains (what our engine
                      uses, without the server around it)
    --mode highlevel  llama_cpp.Llama.create_completion (what a llama-cpp-python user writes)

Commands: {"op": "run", "prompts": [[ids...], ...], "new_tokens": N} -> {"seconds", "ttft"}
          {"op": "rss"} -> {"rss_mb", "peak_mb"};  {"op": "quit"}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


_SILENT: list = []


def _quiet(lib) -> None:
    """No llama.cpp log lines on the terminal (the callback must stay referenced: C keeps it)."""
    if not _SILENT:
        _SILENT.append(lib.llama_log_callback(lambda *_: None))
        lib.llama_log_set(_SILENT[0], None)


def rss_mb() -> tuple[float, float]:
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class LowLevel:
    def __init__(self, gguf: Path, n_ctx: int, threads: int, n_seq: int) -> None:
        import llama_cpp as lib

        self.lib = lib
        _quiet(lib)
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        self.model = lib.llama_model_load_from_file(str(gguf).encode(), params)
        cp = lib.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, 512, 512, n_seq
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True
        self.ctx = lib.llama_init_from_model(self.model, cp)
        self.mem = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(512, 0, 1)
        vocab = lib.llama_model_get_vocab(self.model)
        n_vocab = lib.llama_vocab_n_tokens(vocab)
        eog = [t for t in range(n_vocab) if lib.llama_vocab_is_eog(vocab, t)]
        self.bias = (lib.llama_logit_bias * len(eog))()
        for i, t in enumerate(eog):
            self.bias[i].token, self.bias[i].bias = t, float("-inf")
        self.n_vocab = n_vocab

    def _chain(self):
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        bias = lib.llama_sampler_init_logit_bias(self.n_vocab, len(self.bias), self.bias)
        lib.llama_sampler_chain_add(chain, bias)
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return chain

    def run(self, prompts: list[list[int]], new_tokens: int) -> dict:
        lib, b = self.lib, self.batch
        lib.llama_memory_clear(self.mem, True)
        chains = [self._chain() for _ in prompts]
        started = time.perf_counter()
        n, outs = 0, []
        for s, ids in enumerate(prompts):
            for i, tok in enumerate(ids):
                b.token[n], b.pos[n], b.n_seq_id[n], b.seq_id[n][0] = tok, i, 1, s
                b.logits[n] = i == len(ids) - 1
                n += 1
            outs.append(n - 1)
        b.n_tokens = n
        assert lib.llama_decode(self.ctx, b) == 0
        last = [lib.llama_sampler_sample(c, self.ctx, o) for c, o in zip(chains, outs, strict=True)]
        ttft = time.perf_counter() - started
        pos = [len(ids) for ids in prompts]
        for _ in range(new_tokens - 1):
            for s in range(len(prompts)):
                b.token[s], b.pos[s], b.n_seq_id[s], b.seq_id[s][0], b.logits[s] = last[s], pos[s], 1, s, True
                pos[s] += 1
            b.n_tokens = len(prompts)
            assert lib.llama_decode(self.ctx, b) == 0
            last = [lib.llama_sampler_sample(c, self.ctx, s) for s, c in enumerate(chains)]
        seconds = time.perf_counter() - started
        for c in chains:
            lib.llama_sampler_free(c)
        return {"seconds": seconds, "ttft": ttft}


class HighLevel:
    def __init__(self, gguf: Path, n_ctx: int, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads, verbose=False)
        import llama_cpp as lib

        vocab = self.llm._model.vocab
        self.eog = [t for t in range(self.llm.n_vocab()) if lib.llama_vocab_is_eog(vocab, t)]

    def run(self, prompts: list[list[int]], new_tokens: int) -> dict:
        assert len(prompts) == 1
        self.llm.reset()
        started = time.perf_counter()
        ttft = None
        count = 0
        for _ in self.llm.create_completion(
            prompts[0], max_tokens=new_tokens, temperature=0, stream=True,
            logit_bias={t: float("-inf") for t in self.eog},
        ):
            count += 1
            ttft = ttft or time.perf_counter() - started
        return {"seconds": time.perf_counter() - started, "ttft": ttft, "tokens": count}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--mode", choices=("lowlevel", "highlevel"), default="lowlevel")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-seq", type=int, default=8)
    args = ap.parse_args()
    if args.mode == "lowlevel":
        runner = LowLevel(args.gguf, args.n_ctx, args.threads, args.n_seq)
    else:
        runner = HighLevel(args.gguf, args.n_ctx, args.threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        if cmd["op"] == "rss":
            rss, peak = rss_mb()
            print(json.dumps({"rss_mb": rss, "peak_mb": peak}), flush=True)
        else:
            print(json.dumps(runner.run(cmd["prompts"], cmd["new_tokens"])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
