"""Server life cycle as the supervisor sees it: loading -> ready with real progress, overload
(429), client disconnects, SIGTERM, int8 reporting, and a first start that downloads from a hub."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from llm_supervisor.model_server.weights.manifest import read_manifest
from tests.model_fixtures import FakeHub, ModelServer, running_server, start_model_server


def _poll_until_ready(server: ModelServer, timeout: float = 60) -> list[tuple[int, dict]]:
    seen: list[tuple[int, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log_text()
        try:
            r = httpx.get(f"{server.url}/api/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.01)
            continue
        seen.append((r.status_code, r.json()))
        if r.status_code == 200:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"not ready: {seen[-3:]}\n{server.log_text()}")


def _assert_honest_progress(seen: list[tuple[int, dict]]) -> list[dict]:
    loading = [body for status, body in seen if status == 503]
    assert loading, "never saw the loading state"
    assert all(b["status"] == "loading" and 0.0 <= b["progress"] < 1.0 for b in loading)
    progress = [b["progress"] for b in loading]
    assert progress == sorted(progress), "progress went backwards"
    assert seen[-1][0] == 200 and seen[-1][1]["status"] == "ready"
    return loading


def test_health_goes_from_loading_to_ready(tiny_model_dir: Path) -> None:
    server = start_model_server(tiny_model_dir)
    try:
        loading = _assert_honest_progress(_poll_until_ready(server))
        assert len({b["stage"] for b in loading}) >= 2
        # Requests during loading are told so, not queued or failed with 500.
        events = server.events()
        assert any(e["event"] == "model_ready" for e in events)
    finally:
        server.stop()


def test_requests_while_loading_get_503_with_progress(tiny_model_dir: Path) -> None:
    server = start_model_server(tiny_model_dir)
    try:
        while True:
            try:
                r = httpx.post(f"{server.url}/api/generate", json={"prompt": "hi"}, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.01)
        if r.status_code == 503:
            assert r.json()["error"]["type"] == "model_loading"
            assert "Retry-After" in r.headers
        else:  # the tiny model was simply faster than the first request
            assert r.status_code == 200
    finally:
        server.stop()


def _open_stream(
    server: ModelServer, max_length: int, first_token: bool = True
) -> tuple[httpx.Client, httpx.Response, Any]:
    """Start a streaming request (and read its first token). Keep the returned line iterator
    alive: dropping it closes the response, which the server sees as a disconnect."""
    client = httpx.Client(timeout=60)
    req = client.build_request(
        "POST",
        f"{server.url}/api/generate",
        json={
            "prompt": "Go on",
            "max_length": max_length,
            "temperature": 0.8,
            "ignore_eos": True,
            "stream": True,
        },
    )
    resp = client.send(req, stream=True)
    assert resp.status_code == 200
    lines = resp.iter_lines()
    if first_token:
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["type"] == "token"
    return client, resp, lines


def _wait_idle(server: ModelServer, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = httpx.get(f"{server.url}/api/health").json()
        if h["inflight"] == 0 and h["running"] == 0:
            return h
        time.sleep(0.05)
    raise AssertionError(f"still busy: {h}")


def test_overload_gives_429_and_disconnect_cancels(tiny_model_dir: Path) -> None:
    with running_server(
        tiny_model_dir, MAX_CONCURRENT_REQUESTS=2, MAX_BATCH_SIZE=1, MAX_NEW_TOKENS=100000
    ) as server:
        streams = [_open_stream(server, 100000), _open_stream(server, 100000, first_token=False)]
        h = httpx.get(f"{server.url}/api/health").json()
        assert h["inflight"] == 2 and h["running"] == 1 and h["queued"] == 1
        r = httpx.post(f"{server.url}/api/generate", json={"prompt": "one more"}, timeout=10)
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["type"] == "overloaded"
        r = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, timeout=10)
        assert r.status_code == 429
        # Clients hang up: their generations stop although 100000 tokens were asked for.
        for client, resp, _ in streams:
            resp.close()
            client.close()
        _wait_idle(server)
        r = httpx.post(f"{server.url}/api/generate", json={"prompt": "now", "max_length": 3}, timeout=30)
        assert r.status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'llm_requests_total{route="/api/generate",status="429"} 1.0' in metrics


def test_non_streaming_disconnect_cancels(tiny_model_dir: Path) -> None:
    with running_server(tiny_model_dir, MAX_NEW_TOKENS=100000) as server:
        # The client gives up after 1 s; the server must stop generating 100000 tokens.
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(
                f"{server.url}/api/generate",
                timeout=1.0,
                json={"prompt": "x", "max_length": 100000, "ignore_eos": True},
            )
        _wait_idle(server)


def test_sigterm_lets_inflight_finish_then_exits_zero(tiny_model_dir: Path) -> None:
    """SIGTERM while a request is generating (its first token has arrived): the request still
    gets every token it asked for (not cut short: ``length``, not ``shutdown``), then the
    server exits 0 promptly instead of waiting out the grace period. The grace period is set
    far above what the request needs even on a loaded machine; the test times the exit after
    the request's last token, which is what "lets in-flight finish, then exits" means."""
    tokens = 200
    server = start_model_server(tiny_model_dir, MAX_NEW_TOKENS=100000, SHUTDOWN_TIMEOUT=120)
    try:
        server.wait_ready()
        client, _resp, lines = _open_stream(server, tokens)  # returns once it is generating
        server.proc.send_signal(signal.SIGTERM)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        finished = time.monotonic()
        client.close()
        assert events[-1]["type"] == "done", events[-1]
        assert events[-1]["finish_reason"] == "length"
        assert events[-1]["generated_tokens"] == tokens
        assert server.wait_exit(timeout=60) == 0
        assert time.monotonic() - finished < 15  # right after the request, not after 120 s
    finally:
        server.stop()


def test_sigterm_cancels_work_beyond_the_grace_period(tiny_model_dir: Path) -> None:
    server = start_model_server(tiny_model_dir, MAX_NEW_TOKENS=1000000, SHUTDOWN_TIMEOUT=1)
    try:
        server.wait_ready()
        client, resp, lines = _open_stream(server, 1000000)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "shutdown"
        assert server.wait_exit(timeout=10) == 0
        assert time.monotonic() - started < 6
        client.close()
    finally:
        server.stop()


def test_int8_is_reported(tiny_model_dir: Path) -> None:
    with running_server(tiny_model_dir, USE_INT8="true") as server:
        h = httpx.get(f"{server.url}/api/health").json()
        assert h["quantization"] == "bitsandbytes-int8"
        assert h["dtype"] == "float16" and h["int8_requested"] is True
        assert h["int8_fallback_reason"] is None
        r = httpx.post(
            f"{server.url}/api/generate",
            json={"prompt": "int8", "max_length": 8, "temperature": 0},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["generated_tokens"] > 0
        ready = [e for e in server.events() if e["event"] == "model_ready"]
        assert ready[0]["quantization"] == "bitsandbytes-int8"
        # bitsandbytes' per-matmul cast warning must not flood the log
        assert "MatMul8bitLt" not in server.log_text()


def test_int8_falls_back_when_bitsandbytes_is_broken(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A machine where bitsandbytes is installed but its native library cannot load.
    broken = tmp_path / "site" / "bitsandbytes"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise OSError('libbitsandbytes_cpu.so: cannot open')\n")
    pythonpath = f"{broken.parent}{os.pathsep}{Path(__file__).resolve().parents[2]}"
    with running_server(tiny_model_dir, USE_INT8="true", PYTHONPATH=pythonpath) as server:
        h = httpx.get(f"{server.url}/api/health").json()
        assert h["quantization"] == "none" and h["int8_requested"] is True
        assert "libbitsandbytes_cpu.so" in h["int8_fallback_reason"]
        assert h["dtype"] in ("bfloat16", "float32")
        assert any(e["event"] == "int8_unavailable" for e in server.events())


def test_first_start_downloads_from_the_hub(fake_hub: FakeHub, tmp_path: Path) -> None:
    model_path = tmp_path / "models" / "tiny"
    server = start_model_server(
        model_path, HF_HUB_OFFLINE="0", HF_ENDPOINT=fake_hub.url, MODEL_ID="test/tiny-llama"
    )
    try:
        seen = _poll_until_ready(server)
        health = seen[-1][1]
        assert health["model"] == "test/tiny-llama" and health["source"] == "hub"
        assert read_manifest(model_path)["source"]["endpoint"] == fake_hub.url
        assert any("/resolve/" in r for r in fake_hub.requests)
        stages = {b["stage"] for s, b in seen if s == 503}
        assert "downloading" in stages or "loading_weights" in stages
    finally:
        server.stop()
