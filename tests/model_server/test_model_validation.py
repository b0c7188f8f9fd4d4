"""Bad requests get a 4xx JSON error ``{"error": {"type", "message"}}`` and never a 500."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_supervisor.model_server.api.guard import Refusal, RequestGuard
from llm_supervisor.model_server.settings import ModelServerSettings
from tests.model_fixtures import ModelServer

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
    # issue 9.2: these passed validation and turned the logits into inf/NaN
    ("temperature 1e-45", {"prompt": "hi", "temperature": 1e-45}, 422, "validation_error"),
    ("temperature below 0.01", {"prompt": "hi", "temperature": 0.009}, 422, "validation_error"),
    ("penalty 1e-45", {"prompt": "hi", "repetition_penalty": 1e-45}, 422, "validation_error"),
    ("penalty below 0.1", {"prompt": "hi", "repetition_penalty": 0.09}, 422, "validation_error"),
    ("lone surrogate prompt", b'{"prompt": "a\\ud800b"}', 422, "validation_error"),
    ("lone surrogate stop", b'{"prompt": "hi", "stop": ["\\udfff"]}', 422, "validation_error"),
    # issue 9.17: a RecursionError in json.loads was a 500 with a traceback
    ("deeply nested array", b"[" * 60_000, 400, "invalid_json"),
    ("deeply nested field", b'{"prompt": "hi", "stop": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
     400, "invalid_json"),
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
    err = _assert_error(
        _post(tiny_server, "/api/generate", {"prompt": "x", "temperature": 1e-45}), 422, "validation_error"
    )
    assert err["message"].startswith("temperature:") and "0.01" in err["message"]
    err = _assert_error(
        _post(tiny_server, "/v1/completions", {"prompt": "x", "repetition_penalty": 1e-45}),
        422,
        "validation_error",
    )
    assert err["message"].startswith("repetition_penalty:") and "0.1" in err["message"]


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


def test_greedy_and_smallest_temperature_still_generate(tiny_server: ModelServer) -> None:
    for body in (
        {"temperature": 0, "repetition_penalty": 0.1},
        {"temperature": 0.01, "repetition_penalty": 0.1, "top_p": 0.01, "seed": 1},
        {"temperature": 100, "repetition_penalty": 100, "top_k": 10**12, "seed": 2},
    ):
        r = _post(tiny_server, "/api/generate", {"prompt": "hi", "max_length": 4, **body})
        assert r.status_code == 200, (body, r.text)
        assert r.json()["generated_tokens"] >= 1


def test_server_survives_all_bad_requests(tiny_server: ModelServer) -> None:
    for _, body, _, _ in GENERATE_CASES:
        assert _post(tiny_server, "/api/generate", body).status_code < 500
    r = httpx.get(f"{tiny_server.url}/api/health")
    assert r.status_code == 200
    assert r.json()["inflight"] == 0


# --------------------------------------------------------------------------- browsers (issue 9.9)


def test_readme_curl_command_works_as_written(tiny_server: ModelServer) -> None:
    """``curl URL -d '{...}'`` sends application/x-www-form-urlencoded and no Origin."""
    out = subprocess.run(
        ["curl", "-sS", "-w", "\\n%{http_code}", f"http://localhost:{tiny_server.port}/api/generate",
         "-d", '{"prompt":"What is the capital of France?","max_length":4,"temperature":0,"chat":true}'],
        capture_output=True, text=True, timeout=60, check=True,
    )
    body, _, code = out.stdout.rpartition("\n")
    assert code == "200", out.stdout
    assert json.loads(body)["generated_tokens"] >= 1


CROSS_SITE = "https://evil.example"

BROWSER_CASES: list[tuple[str, dict[str, str], int, str | None]] = [
    # A cross-site page can send these without a CORS preflight; browsers add Origin.
    ("cross-site text/plain", {"Origin": CROSS_SITE, "Content-Type": "text/plain"},
     403, "origin_not_allowed"),
    ("cross-site form", {"Origin": CROSS_SITE, "Content-Type": "application/x-www-form-urlencoded"},
     403, "origin_not_allowed"),
    ("cross-site json", {"Origin": CROSS_SITE, "Content-Type": "application/json"},
     403, "origin_not_allowed"),
    ("sandboxed frame", {"Origin": "null", "Content-Type": "text/plain"}, 403, "origin_not_allowed"),
    ("text/plain without Origin", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("multipart", {"Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"),
    ("own page, form type", {"Origin": "{self}", "Content-Type": "application/x-www-form-urlencoded"},
     415, "unsupported_media_type"),
    ("own page, json", {"Origin": "{self}", "Content-Type": "application/json; charset=utf-8"}, 200, None),
    ("localhost page, json", {"Origin": "http://localhost:3000", "Content-Type": "application/json"},
     200, None),
    ("script, no type", {}, 200, None),
]


@pytest.mark.parametrize(("case", "headers", "status", "error_type"), BROWSER_CASES,
                         ids=[c[0] for c in BROWSER_CASES])
def test_post_content_type_and_origin_rule(
    tiny_server: ModelServer, case: str, headers: dict[str, str], status: int, error_type: str | None
) -> None:
    headers = {k: v.replace("{self}", tiny_server.url) for k, v in headers.items()}
    body = b'{"prompt": "hi", "max_length": 2}'
    for path in ("/api/generate", "/v1/completions"):
        # httpx sends no Content-Type for raw content unless told to.
        r = httpx.post(f"{tiny_server.url}{path}", content=body, headers=headers, timeout=30)
        if error_type is None:
            assert r.status_code == status, r.text
        else:
            err = _assert_error(r, status, error_type)
            assert "Content-Type: application/json" in err["message"] or "Origin" in err["message"] \
                or "refused" in err["message"]


HOSTS: list[tuple[str, int]] = [
    ("evil.example", 421),  # DNS rebinding: the attacker's name pointed at 127.0.0.1
    ("evil.example:5000", 421),
    ("evil.example@localhost", 421),
    ("localhost", 200),
    ("LocalHost.:{port}", 200),
    ("app.localhost", 200),
    ("127.0.0.1:{port}", 200),
    ("[::1]:{port}", 200),
    ("model-service:5000", 200),
    ("192.168.1.20", 200),  # an IP literal cannot be rebound
]


@pytest.mark.parametrize(("host", "status"), HOSTS, ids=[h for h, _ in HOSTS])
def test_host_allow_list(tiny_server: ModelServer, host: str, status: int) -> None:
    host = host.replace("{port}", str(tiny_server.port))
    get = httpx.get(f"{tiny_server.url}/api/health", headers={"Host": host}, timeout=10)
    post = httpx.post(f"{tiny_server.url}/api/generate", headers={"Host": host}, timeout=30,
                      json={"prompt": "hi", "max_length": 2})
    for r in (get, post):
        if status == 421:
            assert "ALLOWED_HOSTS" in _assert_error(r, 421, "host_not_allowed")["message"]
        else:
            assert r.status_code == 200, r.text


def test_allowed_hosts_setting(tiny_model_dir: Path) -> None:
    settings = ModelServerSettings(model_path=tiny_model_dir, allowed_hosts="llm.lan, Other.Example")
    guard = RequestGuard(settings)
    for ok in ("llm.lan", "llm.lan:8000", "other.example", socket.gethostname()):
        guard.check_host(ok)
    with pytest.raises(Refusal):
        guard.check_host("evil.example")
    RequestGuard(ModelServerSettings(model_path=tiny_model_dir, allowed_hosts="*")).check_host("evil.example")
    bound = RequestGuard(ModelServerSettings(model_path=tiny_model_dir, bind_address="llm.box"))
    bound.check_host("llm.box:80")
