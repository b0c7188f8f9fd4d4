"""The official ``openai`` client, unchanged, against a real server on each engine (the tiny
model with transformers, the SmolLM2 GGUF with llama.cpp)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.model_fixtures import ModelServer


@pytest.fixture
def client(api_server: ModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_list(client: openai.OpenAI, api_server: ModelServer) -> None:
    name = httpx.get(f"{api_server.url}/api/health").json()["model"]
    assert [m.id for m in client.models.list()] == [name]


def test_chat_completion(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="test/tiny-llama",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=12,
        temperature=0,
        seed=7,
    )
    choice = resp.choices[0]
    assert resp.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens <= 12
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    again = client.chat.completions.create(
        model="x",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=12,
        temperature=0,
    )
    assert again.choices[0].message.content == choice.message.content


def test_chat_completion_streaming(client: openai.OpenAI) -> None:
    kwargs = dict(
        model="m",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=16,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_completion(client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model="m",
        prompt="The quick brown fox",
        max_tokens=10,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert resp.object == "text_completion"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 10
    assert resp.choices[0].text


def test_completion_streaming(client: openai.OpenAI) -> None:
    full = client.completions.create(
        model="m",
        prompt="Lorem ipsum",
        max_tokens=10,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    chunks = list(
        client.completions.create(
            model="m",
            prompt="Lorem ipsum",
            max_tokens=10,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_client_sees_validation_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.completions.create(model="m", prompt="x", max_tokens=100_000)
    assert "max_length/max_tokens" in str(info.value)
