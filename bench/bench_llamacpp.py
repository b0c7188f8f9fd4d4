"""Benchmark the llama.cpp engine against raw llama.cpp, llama-cpp-python's own server and our
transformers engine, side by side in one run, on the offline SmolLM2 GGUF.

    .venv/bin/python bench/bench_llamacpp.py [--new-tokens 64] [--repeats 3] [--threads 2]

Needs ``llama-cpp-python[server]`` for the peer server (``make bench`` installs it). Every
number is printed with its ratio against a baseline measured in the same run; raw and server
measurements alternate within each repeat so that background load hits both alike.

- single stream through our HTTP API vs raw llama.cpp in-process (low-level batch API, the
  stricter baseline; ``Llama.create_completion`` shown too) — target >= 0.9x;
- time to first token (streaming) vs raw prefill + first token — target within 20 ms;
- 8 concurrent clients vs raw llama.cpp decoding 8 sequences in one batch (target >= 0.8x),
  vs ``python -m llama_cpp.server`` under the same load (target >= 2x) and vs our own single
  stream (target >= 1.3x);
- our llama.cpp engine vs our transformers engine (bf16 and INT8) on the same model;
- resident memory (current and peak) of each process — target: ours <= 1.5x raw.

Greedy decoding, end-of-generation tokens suppressed, so every request yields exactly
``--new-tokens`` tokens; prompts are short chat turns (~40 tokens with SmolLM2's template).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_model_server import PROMPTS, Server, concurrently, default_model, free_port  # noqa: E402

SETTLE_S = 0.5
_SILENT: list = []


def _quiet(lib: Any) -> None:
    """No llama.cpp log lines on the terminal (the callback must stay referenced: C keeps it)."""
    if not _SILENT:
        _SILENT.append(lib.llama_log_callback(lambda *_: None))
        lib.llama_log_set(_SILENT[0], None)


def gguf_model_dir() -> Path:
    """A model directory holding a copy of the offline GGUF with its manifest (as the server
    makes it on a first offline start)."""
    from llm_supervisor.model_server.sources.choice import install_offline_gguf

    target = REPO / ".cache" / "bench-models" / "smollm2-gguf"
    if not target.is_dir():
        install_offline_gguf(target)
    return target


def chat_prompt_ids(gguf: Path) -> list[list[int]]:
    """The same chat-templated token ids our server builds for ``chat: true``."""
    import llama_cpp as lib

    from llm_supervisor.model_server.engines.llama_model import LlamaTokenizer

    _quiet(lib)
    params = lib.llama_model_default_params()
    params.vocab_only = True
    model = lib.llama_model_load_from_file(str(gguf).encode(), params)
    tok = LlamaTokenizer(lib, model)
    out = [
        tok.encode(tok.apply_chat_template([{"role": "user", "content": p}]), add_special_tokens=False)
        for p in PROMPTS
    ]
    lib.llama_model_free(model)
    return out


class Raw:
    """A raw llama.cpp worker process (bench/llamacpp_raw.py)."""

    def __init__(self, gguf: Path, mode: str, threads: int, n_ctx: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "llamacpp_raw.py"), "--gguf", str(gguf),
             "--mode", mode, "--threads", str(threads), "--n-ctx", str(n_ctx)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def run(self, prompts: list[list[int]], n: int) -> dict[str, Any]:
        return self.ask(op="run", prompts=prompts, new_tokens=n)

    def rss(self) -> tuple[float, float]:
        r = self.ask(op="rss")
        return r["rss_mb"], r["peak_mb"]

    def ask_quit(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


class OurServer(Server):
    """Our model server; requests are chat turns (``chat: true`` / chat completions)."""

    def chat(self, i: int, n: int, client: httpx.Client | None = None) -> float:
        started = time.perf_counter()
        r = (client or self.client).post(
            f"{self.url}/api/generate",
            json={"prompt": PROMPTS[i % len(PROMPTS)], "chat": True, "max_length": n,
                  "temperature": 0, "ignore_eos": True},
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert r.json()["generated_tokens"] == n, r.text
        return elapsed

    def chat_ttft(self, i: int) -> float:
        started = time.perf_counter()
        with self.client.stream(
            "POST", f"{self.url}/api/generate", timeout=600,
            json={"prompt": PROMPTS[i], "chat": True, "max_length": 4, "temperature": 0,
                  "stream": True, "ignore_eos": True},
        ) as r:
            first = None
            for line in r.iter_lines():
                if first is None and line.startswith("data: ") and json.loads(line[6:])["type"] == "token":
                    first = time.perf_counter() - started
        assert first is not None
        return first


class PeerServer:
    """``python -m llama_cpp.server`` on the same GGUF, same threads and context size."""

    def __init__(self, gguf: Path, threads: int, n_ctx: int, eog: list[int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.eog = eog
        self.log = open(REPO / ".cache" / f"bench-llama-cpp-server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_threads", str(threads), "--n_ctx", str(n_ctx)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited {self.proc.returncode} (needs "
                                   "pip install 'llama-cpp-python[server]==0.3.36')")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        self.client = httpx.Client(timeout=600)

    def chat(self, i: int, n: int, client: httpx.Client | None = None) -> float:
        started = time.perf_counter()
        r = (client or self.client).post(
            f"{self.url}/v1/chat/completions", timeout=600,
            json={"messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                  "max_tokens": n, "temperature": 0,
                  "logit_bias": {str(t): -100 for t in self.eog}},
        )
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == n, r.text
        return elapsed

    def rss_mb(self) -> tuple[float, float]:
        return _rss(self.proc.pid)

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _rss(pid: int) -> tuple[float, float]:
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def settled(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` after a pause: ggml's worker threads spin for a while after a decode, and
    the process measured before must not steal this one's two cores."""
    time.sleep(SETTLE_S)
    return fn(*args)


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--skip-transformers", action="store_true", help="no transformers comparison")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    n, reps, threads = args.new_tokens, args.repeats, args.threads
    model_dir = gguf_model_dir()
    gguf = next(model_dir.glob("*.gguf"))
    prompts = chat_prompt_ids(gguf)
    print(f"GGUF {gguf.name}, {n} new tokens, median of {reps}, {threads} threads, n_ctx {args.n_ctx}; "
          f"prompt tokens {min(map(len, prompts))}-{max(map(len, prompts))}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    if os.getloadavg()[0] > 1.5:
        print("WARNING: the machine is busy (load average > 1.5): with two cores the ratios below "
              "are mostly noise; rerun when it is quiet", flush=True)

    raw = Raw(gguf, "lowlevel", threads, args.n_ctx)
    high = Raw(gguf, "highlevel", threads, args.n_ctx)
    peer = PeerServer(gguf, threads, args.n_ctx, _eog(gguf))
    ours = OurServer(model_dir, ENGINE="llama.cpp", LLAMA_THREADS=str(threads),
                     LLAMA_N_CTX=str(args.n_ctx), MAX_BATCH_SIZE="8")
    assert ours.health["engine"] == "llama.cpp", ours.health
    rows: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, base: float, value: float) -> None:
        rows.setdefault(name, []).append((base, value))

    try:
        raw.run(prompts[:1], 4)
        high.run(prompts[:1], 4)
        peer.chat(0, 4)
        ours.chat(0, 4)
        for _ in range(reps):
            add("single stream tok/s (vs raw low-level)",
                n / settled(raw.run, prompts[:1], n)["seconds"], n / settled(ours.chat, 0, n))
            add("single stream tok/s (vs Llama.create_completion)",
                n / settled(high.run, prompts[:1], n)["seconds"], n / settled(ours.chat, 0, n))
            add("single stream tok/s (vs llama_cpp.server)",
                n / settled(peer.chat, 0, n), n / settled(ours.chat, 0, n))
            for i in range(2):
                add("time to first token ms (vs raw)",
                    settled(raw.run, prompts[i:i + 1], 1)["ttft"] * 1000, settled(ours.chat_ttft, i) * 1000)
            ours8 = 8 * n / settled(concurrently, lambda i, c: ours.chat(i, n, c), 8)
            add("8 clients tok/s (vs raw batch of 8)",
                8 * n / settled(raw.run, prompts[:8], n)["seconds"], ours8)
            add("8 clients tok/s (vs llama_cpp.server)",
                8 * n / settled(concurrently, lambda i, c: peer.chat(i, n, c), 8), ours8)
        our_rss, peer_rss = ours.rss_mb(), peer.rss_mb()
        raw_rss, high_rss = raw.rss(), high.rss()
    finally:
        ours.stop()
        peer.stop()
        raw.ask_quit()
        high.ask_quit()

    ours_single = med([v for _, v in rows["single stream tok/s (vs raw low-level)"]])
    ours_c8 = med([v for _, v in rows["8 clients tok/s (vs raw batch of 8)"]])

    results: dict[str, Any] = {"new_tokens": n, "repeats": reps, "threads": threads}
    print("\n== our llama.cpp engine through HTTP vs baselines (same run)")
    print(f"{'metric':50} {'baseline':>9} {'ours':>9} {'ratio':>7}   per-repeat ratios")
    for name, values in rows.items():
        base, value = med([b for b, _ in values]), med([v for _, v in values])
        ratios = [v / b for b, v in values]
        print(f"{name:50} {base:9.1f} {value:9.1f} {med(ratios):7.2f}   "
              + " ".join(f"{x:.2f}" for x in ratios))
        results[name] = {"baseline": round(base, 2), "ours": round(value, 2),
                         "ratio": round(med(ratios), 3)}
    ttft = rows["time to first token ms (vs raw)"]
    print(f"{'time to first token, ours - raw (ms)':50} {med([v - b for b, v in ttft]):27.1f}")
    print(f"{'8 clients vs our own single stream':50} {ours_single:9.1f} {ours_c8:9.1f} "
          f"{ours_c8 / ours_single:7.2f}")
    results["8 clients vs own single"] = round(ours_c8 / ours_single, 3)

    table = [("ours, llama.cpp engine (gguf-q4_1)", ours_single, ours_c8, *our_rss),
             ("raw llama.cpp low-level (1 ctx, 8 seqs)", None, None, *raw_rss),
             ("raw Llama() high-level", None, None, *high_rss),
             ("llama_cpp.server", None, None, *peer_rss)]
    if not args.skip_transformers:
        hf_dir = default_model()
        for label, env in (("ours, transformers bf16", {"DTYPE": "bfloat16"}),
                           ("ours, transformers INT8 (bitsandbytes)", {"USE_INT8": "true"})):
            server = OurServer(hf_dir, ENGINE="transformers", MAX_BATCH_SIZE="8", **env)
            try:
                server.chat(0, 4)
                single = med([n / settled(server.chat, 0, n) for _ in range(reps)])
                c8 = med([8 * n / settled(concurrently, lambda i, c, s=server: s.chat(i, n, c), 8)
                          for _ in range(reps)])
                table.append((label, single, c8, *server.rss_mb()))
            finally:
                server.stop()
    print("\n== engines and memory (RSS of each process)")
    print(f"{'process':42} {'1 client':>9} {'8 clients':>10} {'llama.cpp /':>11} {'RSS MB':>8} "
          f"{'peak MB':>8} {'peak / raw':>10}")
    raw_peak = raw_rss[1]
    for label, single, c8, rss, peak in table:
        speed = f"{single:9.1f} {c8:10.1f} {ours_single / single:5.2f}/{ours_c8 / c8:5.2f}" if single else (
            f"{'':9} {'':10} {'':11}")
        print(f"{label:42} {speed} {rss:8.0f} {peak:8.0f} {peak / raw_peak:10.2f}")
        results[f"process {label}"] = {"single_tok_s": single and round(single, 2),
                                       "clients8_tok_s": c8 and round(c8, 2),
                                       "rss_mb": round(rss), "peak_mb": round(peak)}
    print("(tok/s: ratio > 1 is better; ms: ratio < 1 is better; 'llama.cpp /' = our llama.cpp "
          "engine's speed divided by that row's, 1 client / 8 clients)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _eog(gguf: Path) -> list[int]:
    import llama_cpp as lib

    params = lib.llama_model_default_params()
    params.vocab_only = True
    model = lib.llama_model_load_from_file(str(gguf).encode(), params)
    vocab = lib.llama_model_get_vocab(model)
    out = [t for t in range(lib.llama_vocab_n_tokens(vocab)) if lib.llama_vocab_is_eog(vocab, t)]
    lib.llama_model_free(model)
    return out


if __name__ == "__main__":
    sys.exit(main())
