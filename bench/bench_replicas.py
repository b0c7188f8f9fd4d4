"""Replicas behind the gateway: throughput with 1 vs 2 model servers, and requests lost during a
restart (rolling restart of 2 replicas vs plain restart of a single one).

A real llm-supervisord runs the shipped units (model service on the llama.cpp engine with the
offline SmolLM2 GGUF, the Caddy gateway) with MODEL_REPLICAS=1, then 2. Every number comes
from this one run:

- throughput: CLIENTS concurrent clients send POST /api/generate (max_length TOKENS) through
  the gateway for SECONDS; answered requests per second and the median latency;
- loss: the same clients while ``restart model-service`` (1 replica) or
  ``restart --rolling model-service`` (2 replicas) runs, until each restarted server has answered
  again; a lost request is any 5xx or connection error.

    .venv/bin/python bench/bench_replicas.py [--clients 8] [--seconds 20] [--tokens 16]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from tests.model_fixtures import build_gguf_model  # noqa: E402
from tests.replicas.replicas_stack import ReplicaStack, RequestStream  # noqa: E402


def throughput(stack: ReplicaStack, clients: int, seconds: float, tokens: int) -> dict:
    stream = RequestStream(stack.gateway_port, clients=clients, max_length=tokens)
    with stream:
        stream.wait_for_ok(clients, timeout=120)  # warm: every client answered once
        ok_before, started = stream.ok, time.monotonic()
        time.sleep(seconds)
        ok_after, elapsed = stream.ok, time.monotonic() - started
        latencies = stream.latencies[ok_before:ok_after]
    return {"rps": (ok_after - ok_before) / elapsed,
            "p50_s": statistics.median(latencies) if latencies else float("nan"),
            "lost": stream.lost, "failures": dict(stream.failures)}


def loss_during_restart(stack: ReplicaStack, clients: int, tokens: int, rolling: bool) -> dict:
    stream = RequestStream(stack.gateway_port, clients=clients, max_length=tokens)
    args = ["restart", "--rolling", "model-service"] if rolling else ["restart", "model-service"]
    with stream:
        stream.wait_for_ok(clients, timeout=120)
        started = time.monotonic()
        result = stack.daemon.ctl(*args)
        for name in stack.instances:
            stack.daemon.wait_state(name, "running", timeout=180, health="healthy")
        stream.wait_for_ok(stream.ok + clients, timeout=120)
        elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")
    return {"lost": stream.lost, "answered": stream.ok, "seconds": elapsed,
            "failures": dict(stream.failures)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("caddy") is None:
        print("caddy is not installed: sudo apt-get install caddy", file=sys.stderr)
        return 2
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        model_dir = build_gguf_model(Path(tmp) / "model")
        for replicas in (1, 2):
            stack = ReplicaStack(Path(tmp) / f"stack{replicas}", model_dir, replicas)
            try:
                stack.start()
                results[replicas] = {
                    "throughput": throughput(stack, args.clients, args.seconds, args.tokens),
                    "restart": loss_during_restart(stack, args.clients, args.tokens,
                                                   rolling=replicas > 1),
                }
            finally:
                stack.stop()
    one, two = results[1], results[2]
    print(f"{args.clients} clients through the Caddy gateway, max_length {args.tokens}, "
          f"{args.seconds:g} s each (llama.cpp, SmolLM2-135M GGUF)")
    for replicas, label in ((1, "1 replica "), (2, "2 replicas")):
        t = results[replicas]["throughput"]
        print(f"  {label}: {t['rps']:6.2f} req/s  p50 {t['p50_s'] * 1000:6.0f} ms  "
              f"lost {t['lost']} {t['failures'] or ''}")
    print(f"  throughput ratio 2/1 replicas: {two['throughput']['rps'] / one['throughput']['rps']:.2f}x")
    plain, rolling = one["restart"], two["restart"]
    print(f"  plain restart, 1 replica:    lost {plain['lost']:5d} of "
          f"{plain['lost'] + plain['answered']} ({plain['seconds']:.1f} s) {plain['failures']}")
    print(f"  rolling restart, 2 replicas: lost {rolling['lost']:5d} of "
          f"{rolling['lost'] + rolling['answered']} ({rolling['seconds']:.1f} s) "
          f"{rolling['failures']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
