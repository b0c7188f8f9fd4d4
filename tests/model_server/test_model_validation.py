"""Bad requests get a 4xx JSON error ``{"error": {"type", "message"}}`` and never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from model_fixtures import ModelServer

GENERATE_CASES: list[tuple[str, Any, int, str]] = [
    ("not json", b"this is not json", 400, "invalid_json"),
    ("empty body", b"", 400, "invalid_json"),
    ("truncated json", b'{"prompt": "hi"', 400, "invalid_json"),
    ("array body", [1, 2], 422, "validation_error"),
    ("missing prompt", {}, 422, "validation_error"),
    ("empty prompt", {"prompt": ""}, 422, "validation_error"),
    ("blank prompt", {"prompt": "   \n"}, 422, "validation_error"),
    ("prompt not a string", {"prompt": 42}, 422, "validation_error"),
    ("prompt null", {"prompt": None}, 422, "validation_error"),
    ("negative temperature", {"prompt": "hi", "temperature": -0.1}, 422, "validation_error"),
    ("temperature as string", {"prompt": "hi", "temperature": "0.7"}, 422, "validation_error"),
    ("max_length zero", {"prompt": "hi", "max_length": 0}, 422, "validation_error"),
    ("max_length negative", {"prompt": "hi", "max_length": -3}, 422, "validation_error"),
    ("max_length float", {"prompt": "hi", "max_length": 1.5}, 422, "validation_error"),
    ("max_length above limit", {"prompt": "hi", "max_length": 513}, 422, "validation_error"),
    ("top_p zero", {"prompt": "hi", "top_p": 0}, 422, "validation_error"),
    ("top_k negative", {"prompt": "hi", "top_k": -1}, 422, "validation_error"),
    ("penalty zero", {"prompt": "hi", "repetition_penalty": 0}, 422, "validation_error"),
    ("stream not bool", {"prompt": "hi", "stream": "yes"}, 422, "validation_error"),
    ("seed negative", {"prompt": "hi", "seed": -1}, 422, "validation_error"),
    ("too many stops", {"prompt": "hi", "stop": ["a"] * 9}, 422, "validation_error"),
    ("unknown field", {"prompt": "hi", "max_tokens": 5}, 422, "validation_error"),
    ("prompt over MAX_INPUT_TOKENS", {"prompt": "word " * 400}, 422, "prompt_too_long"),
    ("body over MAX_BODY_BYTES", {"prompt": "a" * 70_000}, 413, "payload_too_large"),
]


def _post(server: ModelServer, path: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(
            f"{server.url}{path}",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def _assert_error(r: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("case", "body", "status", "error_type"), GENERATE_CASES, ids=[c[0] for c in GENERATE_CASES]
)
def test_generate_validation(
    tiny_server: ModelServer, case: str, body: Any, status: int, error_type: str
) -> None:
    _assert_error(_post(tiny_server, "/api/generate", body), status, error_type)


def test_error_messages_name_the_field(tiny_server: ModelServer) -> None:
    err = _assert_error(
        _post(tiny_server, "/api/generate", {"prompt": "x", "temperature": -1}),
        422,
        "validation_error",
    )
    assert "temperature" in err["message"]
    err = _assert_error(
        _post(tiny_server, "/api/generate", {"prompt": "x", "max_length": 9999}),
        422,
        "validation_error",
    )
    assert "512" in err["message"]
    err = _assert_error(
        _post(tiny_server, "/api/generate", {"prompt": "word " * 400}), 422, "prompt_too_long"
    )
    assert "256" in err["message"]


OPENAI_CASES: list[tuple[str, str, Any, int]] = [
    ("chat no messages", "/v1/chat/completions", {"messages": []}, 422),
    (
        "chat bad role",
        "/v1/chat/completions",
        {"messages": [{"role": "wizard", "content": "hi"}]},
        422,
    ),
    (
        "chat empty content",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": ""}]},
        422,
    ),
    (
        "chat n=2",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "n": 2},
        422,
    ),
    (
        "chat max_tokens over limit",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000},
        422,
    ),
    ("chat not json", "/v1/chat/completions", b"{", 400),
    ("completion empty list", "/v1/completions", {"prompt": []}, 422),
    ("completion two prompts", "/v1/completions", {"prompt": ["a", "b"]}, 422),
    ("completion negative temperature", "/v1/completions", {"prompt": "a", "temperature": -2}, 422),
]


@pytest.mark.parametrize(("case", "path", "body", "status"), OPENAI_CASES, ids=[c[0] for c in OPENAI_CASES])
def test_openai_validation(tiny_server: ModelServer, case: str, path: str, body: Any, status: int) -> None:
    r = _post(tiny_server, path, body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_unknown_route_and_wrong_method_are_json(tiny_server: ModelServer) -> None:
    r = httpx.get(f"{tiny_server.url}/api/nothing-here")
    _assert_error(r, 404, "not_found")
    r = httpx.get(f"{tiny_server.url}/api/generate")
    _assert_error(r, 405, "method_not_allowed")


def test_server_survives_all_bad_requests(tiny_server: ModelServer) -> None:
    for _, body, _, _ in GENERATE_CASES:
        assert _post(tiny_server, "/api/generate", body).status_code < 500
    r = httpx.get(f"{tiny_server.url}/api/health")
    assert r.status_code == 200
    assert r.json()["inflight"] == 0
