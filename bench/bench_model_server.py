"""Benchmark the model server against raw ``model.generate`` on the same model, in one run.

    .venv/bin/python bench/bench_model_server.py [--model DIR] [--new-tokens 64] [--repeats 3]

Prints ratios (server / raw):
- single request tokens/s through HTTP vs raw ``generate`` (target: overhead <= 5 %);
- time to first token via streaming vs raw prefill + first token;
- throughput with 1/4/8 concurrent HTTP clients vs raw batched ``generate`` at 1/4/8
  (target: >= 0.8x raw batched);
- bf16 vs fp32 vs int8 (bitsandbytes) server: single-request speed, 8-client throughput,
  resident memory (current and peak) of the server process.

Default model: SmolLM2-135M-Instruct converted from the offline GGUF (cached under .cache/).
Greedy decoding, EOS ignored, so every run produces exactly ``--new-tokens`` tokens.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator keeps food cold, in simple terms for a child.",
    "Describe the water cycle and why it matters for farmers in dry regions.",
    "List some tips for someone who is learning to cook for the first time.",
    "What are the main differences between a violin and a cello in an orchestra?",
    "Summarise the plot of a detective novel set in a snowy mountain village.",
    "Give advice to a student preparing for a long mathematics exam next week.",
    "Explain why the sky looks blue during the day and red at sunset, briefly.",
]


METRICS = (
    "single request tok/s",
    "time to first token ms",
    "1 client vs batch 1 tok/s",
    "4 clients vs batch 4 tok/s",
    "8 clients vs batch 8 tok/s",
)


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def default_model() -> Path:
    import transformers

    from llm_supervisor.model_server.sources.choice import convert_offline_gguf

    cached = REPO / ".cache" / "test-models" / f"transformers-{transformers.__version__}" / "smollm2"
    if cached.is_dir():
        return cached
    target = REPO / ".cache" / "bench-models" / "smollm2"
    if not target.is_dir():
        print(f"converting the offline SmolLM2 GGUF into {target} (once) ...", flush=True)
        convert_offline_gguf(target)
    return target


# --------------------------------------------------------------------------- raw baseline


class Raw:
    """In-process ``model.generate`` on the same files, dtype and prompts."""

    def __init__(self, model_dir: Path, dtype: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        self.model.eval()

    def run(self, batch: int, new_tokens: int) -> float:
        """Seconds to generate ``new_tokens`` for each of ``batch`` prompts."""
        enc = self.tok(PROMPTS[:batch], return_tensors="pt", padding=True)
        started = time.perf_counter()
        with self.torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        elapsed = time.perf_counter() - started
        assert out.shape[1] - enc.input_ids.shape[1] == new_tokens
        return elapsed


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def concurrently(fn: Callable[[int, httpx.Client], object], clients: int) -> float:
    """Seconds until ``clients`` simultaneous calls ``fn(i, client)`` have all returned (one HTTP
    client per thread, built before the clock starts)."""
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        client = httpx.Client(timeout=600)
        barrier.wait()
        try:
            fn(i, client)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


class Server:
    def __init__(self, model_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "HF_"))}
        full_env.update(
            MODEL_PATH=str(model_dir),
            MODEL_SERVICE_PORT=str(self.port),
            HF_HUB_OFFLINE="1",
            USE_INT8="false",
            LOG_FORMAT="json",
            MAX_BATCH_SIZE="8",
            PYTHONPATH=str(REPO),
        )
        full_env.update(env)
        self.log = open(REPO / ".cache" / f"bench-server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_supervisor.model_server"],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.health = self._wait_ready()
        # Built once, outside every timer: creating an httpx client loads the CA bundle (~20 ms),
        # which raw in-process generate() never pays.
        self.client = httpx.Client(timeout=600)

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                r = httpx.get(f"{self.url}/api/health", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not ready")

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, MB."""
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def generate(self, prompt: str, new_tokens: int, client: httpx.Client | None = None) -> float:
        started = time.perf_counter()
        r = (client or self.client).post(
            f"{self.url}/api/generate",
            json={
                "prompt": prompt,
                "max_length": new_tokens,
                "temperature": 0,
                "ignore_eos": True,
            },
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert r.json()["generated_tokens"] == new_tokens
        return elapsed

    def ttft(self, prompt: str) -> float:
        started = time.perf_counter()
        with self.client.stream(
            "POST",
            f"{self.url}/api/generate",
            json={"prompt": prompt, "max_length": 8, "temperature": 0, "stream": True, "ignore_eos": True},
            timeout=600,
        ) as r:
            first = None
            for line in r.iter_lines():
                is_token = line.startswith("data: ") and json.loads(line[6:])["type"] == "token"
                if is_token and first is None:
                    first = time.perf_counter() - started
        assert first is not None
        return first

    def concurrent(self, clients: int, new_tokens: int) -> float:
        """Seconds until ``clients`` simultaneous requests have all finished."""
        return concurrently(
            lambda i, client: self.generate(PROMPTS[i % len(PROMPTS)], new_tokens, client), clients)

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="model directory (safetensors)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16", help="dtype of the raw/server comparison")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    model_dir = args.model or default_model()
    n, reps = args.new_tokens, args.repeats
    results: dict[str, Any] = {"model": str(model_dir), "new_tokens": n, "repeats": reps}
    print(
        f"model {model_dir}, {n} new tokens, median of {reps}, torch threads: {os.cpu_count()} CPUs",
        flush=True,
    )

    # Raw and server measurements alternate within each repeat, so that background load on a
    # shared machine hits both sides alike; ratios are medians of per-repeat ratios.
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    raw = Raw(model_dir, args.dtype)
    raw.run(1, 4)  # warm-up
    server = Server(model_dir, DTYPE=args.dtype)
    pairs: dict[str, list[tuple[float, float]]] = {name: [] for name in METRICS}
    try:
        server.generate(PROMPTS[0], 4)  # warm-up
        for _ in range(reps):
            pairs["single request tok/s"].append((n / raw.run(1, n), n / server.generate(PROMPTS[0], n)))
            for _ in range(2):
                pairs["time to first token ms"].append((raw.run(1, 1) * 1000, server.ttft(PROMPTS[0]) * 1000))
            pairs["1 client vs batch 1 tok/s"].append((n / raw.run(1, n), n / server.concurrent(1, n)))
            for c in (4, 8):
                pairs[f"{c} clients vs batch {c} tok/s"].append(
                    (c * n / raw.run(c, n), c * n / server.concurrent(c, n))
                )
        bf16_single = statistics.median(s for _, s in pairs["single request tok/s"])
        bf16_c8 = statistics.median(s for _, s in pairs["8 clients vs batch 8 tok/s"])
        bf16_rss = server.rss_mb()
        bf16_health = server.health
    finally:
        server.stop()
    del raw
    gc.collect()

    print(
        f"\n== server vs raw model.generate ({args.dtype}; server dtype "
        f"{bf16_health['dtype']}, quantization {bf16_health['quantization']})"
    )
    print(f"{'metric':30} {'raw':>9} {'server':>9} {'ratio':>7}   per-repeat ratios")
    for name, values in pairs.items():
        raw_med = statistics.median(r for r, _ in values)
        srv_med = statistics.median(s for _, s in values)
        ratios = [s / r for r, s in values]
        ratio = statistics.median(ratios)
        print(
            f"{name:30} {raw_med:9.1f} {srv_med:9.1f} {ratio:7.2f}   " + " ".join(f"{x:.2f}" for x in ratios)
        )
        results[name] = {
            "raw": round(raw_med, 2),
            "server": round(srv_med, 2),
            "ratio": round(ratio, 3),
            "ratios": [round(x, 3) for x in ratios],
        }
    print("(tok/s: ratio > 1 is better; ms: ratio < 1 is better)")

    # Precision / quantisation comparison, one server each.
    variants: list[tuple[str, dict[str, str]]] = [
        ("fp32", {"DTYPE": "float32"}),
        ("int8 (bitsandbytes)", {"USE_INT8": "true"}),
    ]
    table = [(args.dtype, bf16_single, bf16_c8, *bf16_rss, bf16_health)]
    for label, env in variants:
        server = Server(model_dir, **env)
        try:
            server.generate(PROMPTS[0], 4)
            single = median_of(lambda s=server: s.generate(PROMPTS[0], n), reps)
            conc8 = median_of(lambda s=server: s.concurrent(8, n), reps)
            table.append((label, n / single, 8 * n / conc8, *server.rss_mb(), server.health))
        finally:
            server.stop()
    base_single, base_batch = table[0][1], table[0][2]
    print("\n== precision and quantisation (server, same prompts)")
    print(
        f"{'variant':22} {'dtype':>9} {'quant':>18} {'1 client':>9} {'8 clients':>10} "
        f"{'vs ' + args.dtype:>10} {'RSS MB':>8} {'peak MB':>8}"
    )
    for label, single, batch8, rss, peak, health in table:
        print(
            f"{label:22} {health['dtype']:>9} {health['quantization']:>18} {single:9.1f} "
            f"{batch8:10.1f} {single / base_single:10.2f} {rss:8.0f} {peak:8.0f}"
        )
        results[f"variant {label}"] = {
            "dtype": health["dtype"],
            "quantization": health["quantization"],
            "single_tok_s": round(single, 2),
            "clients8_tok_s": round(batch8, 2),
            "single_vs_base": round(single / base_single, 3),
            "clients8_vs_base": round(batch8 / base_batch, 3),
            "rss_mb": round(rss),
            "peak_rss_mb": round(peak),
        }
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
