"""Many models behind one endpoint: what activation and routing cost, and how swapping behaves.

A real llm-supervisord runs the model service and a catalog of real GGUF models (the offline
SmolLM2 Q4_1 and its Q8_0/Q4_0 requantizations, llama.cpp engine). Every ratio compares two
numbers measured in this one run, interleaved where they can be:

- cold: time to first token of a streamed request to an unloaded model through the router, vs
  the cold load of the same model server started directly (spawn -> /api/health 200, polled
  every 10 ms); goal: TTFT <= cold load + 0.3 s;
- warm: tokens/s of 64-token completions and p50 latency of 1-token completions through the
  router vs the same model server called directly; goals: >= 0.97x and <= +1 ms;
- swap: two models under a budget that fits only one (plus the pinned default), 4 clients,
  200 requests alternating between them; goals: 0 failed, each swap <= 1.5x a cold load;
- fit: three models under a budget that fits all, 4 clients, 120 requests: no load after the
  first round.

    .venv/bin/python bench/bench_models.py [--warm 30] [--swap-requests 200] [--tokens 64]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from tests.daemon_harness import free_port  # noqa: E402
from tests.model_fixtures import cached_smollm2_gguf_dir  # noqa: E402
from tests.models.models_stack import PROMPT, TEST_MODELS, ModelsStack  # noqa: E402

BIG = {n: t.replace("ContextSize=512", "ContextSize=8192") for n, t in TEST_MODELS.items()}


def request(port: int, body: dict[str, Any], path: str = "/v1/completions") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def first_token_seconds(port: int, model: str) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/completions", json.dumps({
        "model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "stream": True}),
        {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    while line := response.readline():
        if line.startswith(b"data: {"):
            elapsed = time.monotonic() - started
            response.read()
            conn.close()
            return elapsed
    raise AssertionError("no token streamed")


def health_ok(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/api/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def direct_cold_load(model_dir: Path, context: int, slots: int) -> float:
    """The same model server the unit runs, started by hand: spawn -> ready."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "HF_"))},
           "MODEL_PATH": str(model_dir), "MODEL_SERVICE_PORT": str(port), "MODEL_ID": "",
           "HF_HUB_OFFLINE": "1", "ENGINE": "llama.cpp", "LLAMA_N_CTX": str(context),
           "MAX_BATCH_SIZE": str(slots), "VERIFY_MODEL": "sha256", "HOST": "127.0.0.1",
           "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "llm_supervisor.model_server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        while not health_ok(port):
            if proc.poll() is not None:
                raise RuntimeError("the model server exited")
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(30)


def bench_cold_and_warm(root: Path, warm: int, tokens: int) -> dict[str, Any]:
    stack = ModelsStack(root / "warm", cached_smollm2_gguf_dir(), TEST_MODELS).start()
    try:
        results: dict[str, Any] = {}
        # Make beta's file once (requantize) and note where it is.
        stack.daemon.ctl("models", "load", "beta", check=True)
        stack.daemon.ctl("models", "unload", "beta", check=True)
        beta_dir = Path(stack.daemon.state_dir) / "models" / "beta"
        cold, ttft = [], []
        for _ in range(3):
            cold.append(direct_cold_load(beta_dir, 512, 2))
            ttft.append(first_token_seconds(stack.router_port, "beta"))
            stack.daemon.ctl("models", "unload", "beta", check=True)
        results["cold_load_s"] = statistics.median(cold)
        results["cold_ttft_s"] = statistics.median(ttft)
        print("cold:", json.dumps({"direct_cold_loads_s": cold, "router_ttfts_s": ttft}),
              flush=True)

        stack.daemon.ctl("models", "load", "alpha", check=True)
        direct_port = int(stack.models()["alpha"]["upstream"].rsplit(":", 1)[1])
        body64 = {"model": "alpha", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
                  "ignore_eos": True}
        body1 = {"model": "alpha", "prompt": PROMPT, "max_tokens": 1, "temperature": 0}
        for port in (direct_port, stack.router_port):  # warm both paths
            request(port, body64)
        tps: dict[int, list[float]] = {direct_port: [], stack.router_port: []}
        lat: dict[int, list[float]] = {direct_port: [], stack.router_port: []}
        for _ in range(warm):
            for port in (direct_port, stack.router_port):
                started = time.monotonic()
                status, data = request(port, body64)
                elapsed = time.monotonic() - started
                assert status == 200, data
                tps[port].append(json.loads(data)["usage"]["completion_tokens"] / elapsed)
        for _ in range(warm * 3):
            for port in (direct_port, stack.router_port):
                started = time.monotonic()
                status, _ = request(port, body1)
                lat[port].append(time.monotonic() - started)
                assert status == 200
        results["direct_tps"] = statistics.median(tps[direct_port])
        results["router_tps"] = statistics.median(tps[stack.router_port])
        results["direct_p50_ms"] = statistics.median(lat[direct_port]) * 1000
        results["router_p50_ms"] = statistics.median(lat[stack.router_port]) * 1000
        return results
    finally:
        stack.stop()


def run_clients(port: int, models: list[str], total: int, clients: int) -> dict[str, Any]:
    failures: list[str] = []
    done = 0
    lock = threading.Lock()

    def client(index: int) -> None:
        nonlocal done
        for k in range(total // clients):
            model = models[(k + index // 2) % len(models)] if len(models) == 2 else \
                models[(k + index) % len(models)]
            try:
                status, data = request(port, {"model": model, "prompt": PROMPT,
                                              "max_tokens": 4, "temperature": 0})
            except OSError as exc:
                status, data = 0, str(exc).encode()
            with lock:
                done += 1
                if status != 200:
                    failures.append(f"{model}: {status} {data[:200]!r}")

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests": done, "failed": len(failures), "failures": failures[:5],
            "seconds": time.monotonic() - started}


def load_seconds(stack: ModelsStack, model: str) -> list[float]:
    return [e["seconds"] for e in stack.daemon.events()
            if e.get("event") == "model_loaded" and e.get("model") == model]


def bench_swap(root: Path, requests: int, cold_load: float) -> dict[str, Any]:
    stack = ModelsStack(root / "swap", cached_smollm2_gguf_dir(), BIG,
                        MODEL_MEMORY_BUDGET="1150M").start()
    try:
        for model in ("alpha", "beta"):  # make both files first: swaps then measure loads only
            stack.daemon.ctl("models", "load", model, check=True)
        run = run_clients(stack.router_port, ["alpha", "beta"], requests, 4)
        if cold_load <= 0:  # measured here, in the same run: the same model started directly
            stack.daemon.ctl("models", "unload", "beta", check=True)
            cold_load = statistics.median(direct_cold_load(
                Path(stack.daemon.state_dir) / "models" / "beta", 8192, 2) for _ in range(3))
        swaps = load_seconds(stack, "alpha")[1:] + load_seconds(stack, "beta")[1:]
        views = stack.models()
        run.update({"swaps": len(swaps), "swap_median_s": statistics.median(swaps) if swaps else 0,
                    "swap_max_s": max(swaps) if swaps else 0,
                    "evictions": views["alpha"]["evictions"] + views["beta"]["evictions"],
                    "cold_load_s": cold_load})
        return run
    finally:
        stack.stop()


def bench_fit(root: Path) -> dict[str, Any]:
    stack = ModelsStack(root / "fit", cached_smollm2_gguf_dir(), TEST_MODELS,
                        MODEL_MEMORY_BUDGET="4G").start()
    try:
        first = run_clients(stack.router_port, ["alpha", "beta", "gamma"], 12, 4)
        loads_after_first = sum(stack.models()[m]["loads"] for m in ("alpha", "beta", "gamma"))
        run = run_clients(stack.router_port, ["alpha", "beta", "gamma"], 120, 4)
        loads = sum(stack.models()[m]["loads"] for m in ("alpha", "beta", "gamma"))
        return {**run, "loads_first_round": loads_after_first,
                "loads_after": loads - loads_after_first, "first_failed": first["failed"]}
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--swap-requests", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per warm request")
    parser.add_argument("--only", choices=["swap"], help="run one part only")
    parser.add_argument("--cold-load", type=float, default=0.0,
                        help="with --only swap: the cold load to compare swaps with (s); "
                             "0 = measure it in the same run")
    args = parser.parse_args()
    if args.only == "swap":  # re-measure the swap alone, against --cold-load seconds
        with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
            print("swap:", json.dumps(bench_swap(Path(tmp), args.swap_requests,
                                                 args.cold_load)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        root = Path(tmp)
        warm = bench_cold_and_warm(root, args.warm, args.tokens)
        print("warm:", json.dumps(warm), flush=True)  # each part as soon as it is measured
        swap = bench_swap(root, args.swap_requests, warm["cold_load_s"])
        print("swap:", json.dumps(swap), flush=True)
        fit = bench_fit(root)
        print("fit:", json.dumps(fit), flush=True)
    rows = [
        ("cold: TTFT of an unloaded model via the router", f"{warm['cold_ttft_s']:.2f} s",
         f"direct cold load {warm['cold_load_s']:.2f} s",
         f"+{warm['cold_ttft_s'] - warm['cold_load_s']:.2f} s", "<= +0.3 s"),
        (f"warm: tokens/s, {args.tokens} tokens", f"{warm['router_tps']:.1f}", f"{warm['direct_tps']:.1f}",
         f"{warm['router_tps'] / warm['direct_tps']:.3f}x", ">= 0.97x"),
        ("warm: p50, 1-token completion", f"{warm['router_p50_ms']:.1f} ms",
         f"{warm['direct_p50_ms']:.1f} ms",
         f"+{warm['router_p50_ms'] - warm['direct_p50_ms']:.2f} ms", "<= +1 ms"),
        (f"swap: 2 models, budget for 1, 4 clients, {swap['requests']} requests",
         f"{swap['failed']} failed, {swap['swaps']} swaps, median {swap['swap_median_s']:.2f} s,"
         f" max {swap['swap_max_s']:.2f} s", f"cold load {swap['cold_load_s']:.2f} s",
         f"max {swap['swap_max_s'] / swap['cold_load_s']:.2f}x", "0 failed, <= 1.5x"),
        (f"fit: 3 models, 4 clients, {fit['requests']} requests",
         f"{fit['failed']} failed, {fit['loads_after']} loads after the first round",
         f"{fit['loads_first_round']} loads in the first round", "", "0 loads"),
    ]
    print("| measure | routed | baseline | ratio | goal |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
