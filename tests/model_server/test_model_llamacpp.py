"""The llama.cpp engine in real server processes on the real SmolLM2 GGUF (98 MB, loads in about
a second): engine selection and honest health, continuous batching that really interleaves,
cancellation that frees a slot, the offline first start without conversion, and damaged GGUF
files reported as weights_load_failed (exit 65)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.core.exit_codes import WEIGHTS_LOAD_FAILED
from llm_supervisor.model_server.sources.choice import OFFLINE_GGUF
from llm_supervisor.model_server.weights.manifest import read_manifest, verify_model_dir
from tests.model_fixtures import ModelServer, build_gguf_model, running_server, start_model_server


def test_auto_engine_serves_a_gguf_with_llama_cpp(smollm2_gguf_dir: Path) -> None:
    # USE_INT8=true as in the original stack: reported as not applicable, not silently ignored.
    with running_server(smollm2_gguf_dir, USE_INT8="true") as server:
        h = httpx.get(f"{server.url}/api/health").json()
        assert h["engine"] == "llama.cpp"
        assert h["quantization"] == "gguf-q4_1"
        assert h["int8_requested"] is True and h["int8_applicable"] is False
        assert "not applicable" in h["int8_fallback_reason"]
        assert h["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and h["source"] == "package"
        assert h["device"] == "cpu"
        r = httpx.post(
            f"{server.url}/api/generate",
            timeout=60,
            json={"prompt": "The capital of France is", "max_length": 8, "temperature": 0},
        )
        assert r.status_code == 200 and r.json()["generated_tokens"] > 0
        assert any(e.get("event") == "int8_not_applicable" for e in server.events())


def _stream(server: ModelServer, prompt: str, marks: dict[str, float], barrier: threading.Barrier) -> None:
    with httpx.Client(timeout=120) as client:
        barrier.wait()
        body = {"prompt": prompt, "max_length": 64, "temperature": 0, "ignore_eos": True, "stream": True}
        with client.stream("POST", f"{server.url}/api/generate", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "token" and "first" not in marks:
                    marks["first"] = time.monotonic()
                if event["type"] == "done":
                    marks["done"] = time.monotonic()
                    marks["tokens"] = event["generated_tokens"]


def test_concurrent_streams_interleave(gguf_server: ModelServer) -> None:
    """Four clients at once: every one has its first token before any of them is finished, so
    they were decoded together, not one after the other."""
    prompts = ["Tell me about cats.", "Describe the sea.", "Why does it rain?", "How is bread made?"]
    marks: list[dict[str, float]] = [{} for _ in prompts]
    barrier = threading.Barrier(len(prompts))
    threads = [
        threading.Thread(target=_stream, args=(gguf_server, p, m, barrier))
        for p, m in zip(prompts, marks, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(m.get("tokens") == 64 for m in marks), marks
    assert max(m["first"] for m in marks) < min(m["done"] for m in marks), marks
    metrics = httpx.get(f"{gguf_server.url}/metrics").text
    assert "llm_batch_current_size" in metrics


def _open(server: ModelServer) -> tuple[httpx.Client, httpx.Response, Any]:
    client = httpx.Client(timeout=60)
    body = {"prompt": "Go on", "max_length": 100000, "temperature": 0.8, "ignore_eos": True, "stream": True}
    resp = client.send(client.build_request("POST", f"{server.url}/api/generate", json=body), stream=True)
    assert resp.status_code == 200
    return client, resp, resp.iter_lines()


def _first_token(lines: Any) -> None:
    for line in lines:
        if line.startswith("data: ") and json.loads(line[6:])["type"] == "token":
            return
    raise AssertionError("stream ended without a token")


def _health_until(server: ModelServer, check: Any, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = httpx.get(f"{server.url}/api/health").json()
        if check(h):
            return h
        time.sleep(0.05)
    raise AssertionError(f"health never matched: {h}")


def test_cancelled_request_frees_its_slot(smollm2_gguf_dir: Path) -> None:
    """One slot: a second request waits (a third is refused with 429); when the first client
    hangs up, its sequence leaves the batch at once and the waiting one gets the slot."""
    with running_server(
        smollm2_gguf_dir, MAX_BATCH_SIZE=1, MAX_CONCURRENT_REQUESTS=2, MAX_NEW_TOKENS=100000
    ) as server:
        a_client, a_resp, a_lines = _open(server)
        _first_token(a_lines)
        b_client, b_resp, b_lines = _open(server)
        _health_until(server, lambda h: h["running"] == 1 and h["queued"] == 1)
        full = httpx.post(f"{server.url}/v1/completions", json={"prompt": "one more"}, timeout=10)
        assert full.status_code == 429 and int(full.headers["Retry-After"]) >= 1
        a_resp.close()
        a_client.close()
        _first_token(b_lines)  # would hang (test timeout) if A still held the slot
        _health_until(server, lambda h: h["inflight"] == 1 and h["running"] == 1)
        b_resp.close()
        b_client.close()
        _health_until(server, lambda h: h["inflight"] == 0 and h["running"] == 0)
        r = httpx.post(f"{server.url}/api/generate", json={"prompt": "now", "max_length": 3}, timeout=30)
        assert r.status_code == 200 and r.json()["generated_tokens"] == 3


def test_sigterm_ends_a_long_generation_after_the_grace_period(smollm2_gguf_dir: Path) -> None:
    server = start_model_server(smollm2_gguf_dir, MAX_NEW_TOKENS=100000, SHUTDOWN_TIMEOUT=1)
    try:
        server.wait_ready()
        client, _resp, lines = _open(server)
        _first_token(lines)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "shutdown"
        assert server.wait_exit(timeout=10) == 0
        assert time.monotonic() - started < 8
        client.close()
    finally:
        server.stop()


def test_small_context_chunks_prompts_and_ends_the_longest_sequence(smollm2_gguf_dir: Path) -> None:
    """256 KV cells, 32 tokens per decode: a 100-token prompt is prefilled in chunks; two
    sequences that together outgrow the cache do not fail: the one holding more cells ends with
    ``length``, the other finishes."""
    with running_server(
        smollm2_gguf_dir, LLAMA_N_CTX=256, LLAMA_N_BATCH=32, MAX_BATCH_SIZE=2, MAX_NEW_TOKENS=200
    ) as server:
        long_prompt = " ".join(["apple", "pear", "plum", "fig"] * 25)
        r = httpx.post(
            f"{server.url}/api/generate",
            timeout=60,
            json={"prompt": long_prompt, "max_length": 4, "temperature": 0, "ignore_eos": True},
        )
        assert r.status_code == 200, r.text
        assert r.json()["prompt_tokens"] > 64 and r.json()["generated_tokens"] == 4

        results: list[dict] = []

        def one(prompt: str) -> None:
            body = {"prompt": prompt, "max_length": 200, "temperature": 0, "ignore_eos": True}
            results.append(httpx.post(f"{server.url}/api/generate", timeout=120, json=body).json())

        first = threading.Thread(target=one, args=("Tell me a story.",))
        first.start()
        _health_until(server, lambda h: h["running"] == 1)
        second = threading.Thread(target=one, args=("Describe the sea.",))
        second.start()
        first.join(120)
        second.join(120)
        assert [r["finish_reason"] for r in results] == ["length", "length"], results
        counts = sorted(r["generated_tokens"] for r in results)
        assert counts[0] < 200 and counts[1] == 200, counts
        _health_until(server, lambda h: h["inflight"] == 0)


def test_smallest_temperature_and_penalty_are_safe(gguf_server: ModelServer) -> None:
    """The smallest values the API accepts sample without NaN (llama.cpp's sampler divides by
    the temperature in f32); the output is the greedy one, as the limit of such a sharp
    distribution."""
    body = {"prompt": "Hello", "max_length": 8, "ignore_eos": True}
    greedy = httpx.post(f"{gguf_server.url}/api/generate", timeout=60, json={**body, "temperature": 0})
    sharp = httpx.post(
        f"{gguf_server.url}/api/generate",
        timeout=60,
        json={**body, "temperature": 0.01, "repetition_penalty": 0.1, "seed": 3},
    )
    assert greedy.status_code == 200 and sharp.status_code == 200, sharp.text
    assert sharp.json()["generated_tokens"] == 8
    tiny = httpx.post(f"{gguf_server.url}/api/generate", timeout=60, json={**body, "temperature": 1e-30})
    assert tiny.status_code == 422


@pytest.mark.slow
def test_offline_first_start_serves_the_gguf_without_conversion(tmp_path: Path) -> None:
    model_path = tmp_path / "models" / "default"
    started = time.monotonic()
    server = start_model_server(model_path, MODEL_ID="TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    try:
        health = server.wait_ready(timeout=120)
        assert health["engine"] == "llama.cpp" and health["source"] == "package"
        # no 20 s de-quantisation: the GGUF is copied and loaded as it is
        assert time.monotonic() - started < 60
        assert sorted(p.name for p in model_path.iterdir()) == [
            OFFLINE_GGUF,
            "llm-supervisor-manifest.json",
        ]
        manifest = read_manifest(model_path)
        assert manifest["source"]["kind"] == "package"
        assert list(manifest["files"]) == [OFFLINE_GGUF]
        assert verify_model_dir(model_path) == []
        assert sorted(p.name for p in model_path.parent.iterdir()) == ["default"]
        events = [e.get("event") for e in server.events()]
        assert "gguf_copy_done" in events and "gguf_convert_start" not in events
    finally:
        server.stop()


def _truncate(d: Path) -> None:
    f = d / OFFLINE_GGUF
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)


def _flip(d: Path) -> None:
    f = d / OFFLINE_GGUF
    with open(f, "r+b") as fh:
        fh.seek(f.stat().st_size - 4096)
        fh.write(os.urandom(64))  # inside tensor data: llama.cpp loads it silently


def _header(d: Path) -> None:
    f = d / OFFLINE_GGUF
    with open(f, "r+b") as fh:
        fh.write(b"NOPE")


def _missing(d: Path) -> None:
    (d / OFFLINE_GGUF).unlink()


@pytest.mark.parametrize(
    ("damage", "error_type", "env"),
    [
        (_truncate, "GGUFLoadError", {}),
        (_header, "GGUFLoadError", {}),
        (_missing, "FileNotFoundError", {}),
        (_flip, "ManifestMismatch", {"VERIFY_MODEL": "sha256"}),
    ],
    ids=["truncated", "bad-magic", "missing", "bit-rot"],
)
def test_damaged_gguf_exits_with_weights_load_failed(
    tmp_path: Path, damage: Any, error_type: str, env: dict[str, str]
) -> None:
    model = build_gguf_model(tmp_path / "model")
    damage(model)
    server = start_model_server(model, **env)
    try:
        assert server.wait_exit(timeout=60) == WEIGHTS_LOAD_FAILED, server.log_text()
        failures = [e for e in server.events() if e.get("event") == "weights_load_failed"]
        assert len(failures) == 1, server.log_text()
        assert Path(failures[0]["file"]).name == OFFLINE_GGUF
        assert failures[0]["error_type"] == error_type
        assert failures[0]["model_path"] == str(model)
    finally:
        server.stop()
