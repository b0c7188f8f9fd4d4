"""The inputs of the API fault suite: malformed, oversized, wrong-typed and extreme-valued
requests to the model server's POST routes, each expected to get a 4xx.

A case is ``(name, route, body bytes, headers)``. Bodies are bytes so that what is not valid
JSON (or not valid UTF-8) can be sent as well. The limits match the suite's server:
``MAX_BODY_BYTES=65536``, ``MAX_INPUT_TOKENS=256``, ``MAX_NEW_TOKENS=512``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 65536
JSON = {"Content-Type": "application/json"}

GENERATE = "/api/generate"
COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
ROUTES = (GENERATE, COMPLETIONS, CHAT)

# The smallest valid body of each route; every case breaks one thing in it.
VALID: dict[str, dict[str, Any]] = {
    GENERATE: {"prompt": "Once upon a time", "max_length": 2},
    COMPLETIONS: {"prompt": "Once upon a time", "max_tokens": 2},
    CHAT: {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 2},
}
# Numeric fields, and the name of the length field, per route.
NUMBERS: dict[str, list[str]] = {
    GENERATE: ["max_length", "temperature", "top_p", "top_k", "repetition_penalty", "seed"],
    COMPLETIONS: ["max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "n"],
    CHAT: ["max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
           "repetition_penalty", "seed", "n"],
}
BOOLS = ["stream", "ignore_eos"]


@dataclass(frozen=True)
class Case:
    name: str
    route: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _with(route: str, **changes: Any) -> bytes:
    return _dump({**VALID[route], **changes})


# Values no numeric field accepts. JSON has no NaN/Infinity, but Python's parser takes them.
BAD_NUMBERS: list[tuple[str, str]] = [
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("1e999", "1e999"),  # overflows to inf
    ("-1e308", "-1e308"),
    ("1e308", "1e308"),
    ("-2**64", str(-(2**64))),
    ("10**40", str(10**40)),
    ("-1", "-1"),
]
# Field-specific bad values: (field, literal).
BAD_FIELD_VALUES: list[tuple[str, str]] = [
    ("temperature", "1e-45"),  # issue 9.2: divided the logits into inf
    ("temperature", "5e-324"),  # smallest subnormal
    ("temperature", "0.0099"),
    ("temperature", "100.5"),
    ("repetition_penalty", "1e-45"),  # issue 9.2
    ("repetition_penalty", "0"),
    ("repetition_penalty", "0.0999"),
    ("top_p", "0"),
    ("top_p", "1e-400"),  # underflows to 0.0
    ("top_p", "1.0000001"),
    ("seed", str(2**63)),
    ("max_length", "0"),
    ("max_length", "513"),
    ("max_length", "1.5"),
    ("max_tokens", "0"),
    ("max_tokens", str(2**63)),
    ("max_completion_tokens", "0"),
    ("n", "2"),
    ("n", "0"),
]
WRONG_TYPES: list[tuple[str, Any]] = [
    ("string", "1"),
    ("list", [1]),
    ("object", {"value": 1}),
    ("true", True),
]


def malformed_cases() -> list[Case]:
    """Bodies that are not a JSON object, or not JSON at all."""
    raw: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("whitespace", b" \n\t "),
        ("not json", b"prompt=hello"),
        ("truncated", b'{"prompt": "hi"'),
        ("trailing garbage", b'{"prompt": "hi"} x'),
        ("single quotes", b"{'prompt': 'hi'}"),
        ("invalid utf-8", b'{"prompt": "\xff\xfe\xfd"}'),
        ("utf-16", '{"prompt": "hi"}'.encode("utf-16")),
        ("nul bytes", b"\x00" * 64),
        ("null", b"null"),
        ("number", b"42"),
        ("string", b'"prompt"'),
        ("array", b'[{"prompt": "hi"}]'),
        ("deep array", b"[" * 60_000),  # issue 9.17: RecursionError was a 500
        ("deep object", b'{"a":' * 30_000),
        ("deep valid nesting", b'{"prompt": "hi", "stop": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"),
        ("lone surrogate", b'{"prompt": "\\ud800"}'),
        ("lone surrogate pair half", b'{"prompt": "a\\udfffb"}'),
    ]
    return [Case(f"malformed/{name}/{route}", route, body) for route in ROUTES for name, body in raw]


def oversized_cases() -> list[Case]:
    cases = []
    for route in ROUTES:
        text_field = "prompt" if route != CHAT else None
        big = "a" * (MAX_BODY_BYTES + 1)
        if text_field:
            cases.append(Case(f"oversized/body/{route}", route, _with(route, prompt=big)))
            cases.append(Case(f"oversized/tokens/{route}", route, _with(route, prompt="word " * 2000)))
        else:
            cases.append(Case(f"oversized/body/{route}", route,
                              _with(route, messages=[{"role": "user", "content": big}])))
            cases.append(Case(f"oversized/tokens/{route}", route,
                              _with(route, messages=[{"role": "user", "content": "word " * 2000}])))
            cases.append(Case(f"oversized/many messages/{route}", route,
                              _with(route, messages=[{"role": "user", "content": "hi"}] * 3000)))
        cases.append(Case(f"oversized/stop count/{route}", route, _with(route, stop=["x"] * 9)))
        cases.append(Case(f"oversized/stop length/{route}", route, _with(route, stop=["x" * 201])))
        cases.append(Case(f"oversized/padding/{route}", route,
                          _dump({**VALID[route], "unused": "z" * MAX_BODY_BYTES})))
    return cases


def wrong_type_cases() -> list[Case]:
    cases = []
    for route in ROUTES:
        fields = [*NUMBERS[route], *BOOLS, "stop"]
        fields += ["prompt"] if route != CHAT else ["messages"]
        for name in fields:
            for tname, value in WRONG_TYPES:
                if name == "stop" and tname in ("string", "list"):
                    continue  # a stop string and a stop list are both valid
                if name == "prompt" and (tname == "string" or (route == COMPLETIONS and tname == "list")):
                    continue  # a prompt string, and for completions one prompt in a list, are valid
                if name in BOOLS and tname == "true":
                    continue
                cases.append(Case(f"wrong type/{name}={tname}/{route}", route, _with(route, **{name: value})))
        for name in ("prompt",) if route != CHAT else ():
            cases.append(Case(f"wrong type/{name}=null/{route}", route, _with(route, **{name: None})))
    chat_bad: list[tuple[str, Any]] = [
        ("role number", [{"role": 1, "content": "hi"}]),
        ("unknown role", [{"role": "wizard", "content": "hi"}]),
        ("content number", [{"role": "user", "content": 5}]),
        ("image part", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        ("part without text", [{"role": "user", "content": [{"type": "text"}]}]),
        ("message not object", ["hi"]),
        ("no text at all", [{"role": "user", "content": "   "}]),
        ("empty list", []),
    ]
    cases += [Case(f"wrong type/messages {name}/{CHAT}", CHAT, _with(CHAT, messages=value))
              for name, value in chat_bad]
    cases.append(Case(f"wrong type/unknown field/{GENERATE}", GENERATE, _with(GENERATE, max_tokens=5)))
    return cases


def extreme_value_cases() -> list[Case]:
    cases = []
    for route in ROUTES:
        for name in NUMBERS[route]:
            for label, literal in BAD_NUMBERS:
                if name == "top_k" and label == "10**40":
                    continue  # valid: top_k has no upper bound (see VALID_EXTREMES)
                body = _with(route).rstrip(b"}") + f', "{name}": {literal}}}'.encode()
                cases.append(Case(f"extreme/{name}={label}/{route}", route, body))
        for name, literal in BAD_FIELD_VALUES:
            if name in NUMBERS[route]:
                body = _with(route).rstrip(b"}") + f', "{name}": {literal}}}'.encode()
                cases.append(Case(f"extreme/{name}={literal}/{route}", route, body))
    return cases


# Extreme values that are valid: each must still answer 200 (one or two tokens).
VALID_EXTREMES: list[dict[str, Any]] = [
    {"top_k": 10**40},
    {"top_k": 1},
    {"seed": 2**63 - 1},
    {"temperature": 100.0, "repetition_penalty": 100.0},
    {"temperature": 0.01, "repetition_penalty": 0.1},
    {"temperature": 0, "repetition_penalty": 0.1},
    {"top_p": 1e-300},
    {"top_p": 5e-324, "temperature": 0.01},
    {"max_length": 1, "ignore_eos": True},
    {"stop": ["\u0000", "x" * 200]},
    {"prompt": "\u0000\ufffd\U0001f600 " * 20},
]


def header_cases() -> list[Case]:
    """Valid bodies that a browser page could have forged, or sent to the wrong host."""
    cases = []
    for route in ROUTES:
        body = _dump(VALID[route])
        for label, headers in [
            ("text/plain", {"Content-Type": "text/plain"}),
            ("multipart", {"Content-Type": "multipart/form-data; boundary=b"}),
            ("xml", {"Content-Type": "application/xml"}),
            ("cross-site json", {**JSON, "Origin": "https://evil.example"}),
            ("cross-site form", {"Content-Type": "application/x-www-form-urlencoded",
                                 "Origin": "http://evil.example"}),
            ("null origin", {"Content-Type": "text/plain", "Origin": "null"}),
            ("rebound host", {**JSON, "Host": "evil.example"}),
            ("host with userinfo", {**JSON, "Host": "evil.example@127.0.0.1"}),
        ]:
            cases.append(Case(f"headers/{label}/{route}", route, body, headers))
    return cases


def all_cases() -> list[Case]:
    return [*malformed_cases(), *oversized_cases(), *wrong_type_cases(), *extreme_value_cases(),
            *header_cases()]
