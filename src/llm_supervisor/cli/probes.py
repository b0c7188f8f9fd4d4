"""HTTP probes the operator views run against the stack: health and a short generate, timed.

Standard library only (``urllib``): ``monitor`` and ``start --wait`` call them every few seconds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Probe:
    """One request: did it pass, how long it took, what came back (or why it failed)."""

    name: str
    url: str
    ok: bool
    latency_s: float
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        text = f"{verdict} {self.name} ({self.latency_s * 1000:.0f} ms)"
        if self.ok and "generated_tokens" in self.body:
            text += f", {self.body['generated_tokens']} token(s)"
        if not self.ok:
            text += f": {self.error}"
        return text


def request(name: str, url: str, payload: dict[str, Any] | None, timeout: float) -> Probe:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    started = time.monotonic()
    status: int | None = None
    raw = b""
    error = ""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
            status = response.status
            raw = response.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        raw = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        error = f"no answer ({reason})"
    latency = time.monotonic() - started
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(raw) if raw else {}
        body = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        body = {}
    ok = status == 200
    if status is not None and not ok:
        detail = body.get("error")
        message = detail.get("message") if isinstance(detail, dict) else None
        error = f"HTTP {status}" + (f": {message}" if message else "")
        if body.get("status") == "loading":
            error = f"HTTP {status}: still loading ({body.get('stage')}, " \
                    f"{float(body.get('progress') or 0):.0%})"
    return Probe(name, url, ok, latency, status, body, error)


def health(base_url: str, timeout: float = 5.0) -> Probe:
    return request("health", base_url.rstrip("/") + "/api/health", None, timeout)


def generate(base_url: str, max_tokens: int = 8, timeout: float = 60.0) -> Probe:
    """A short greedy generate (what run.sh's API test did, smaller)."""
    payload = {"prompt": "What is the capital of France?", "max_length": max_tokens,
               "temperature": 0, "chat": True}
    return request("generate", base_url.rstrip("/") + "/api/generate", payload, timeout)


def get_text(url: str, timeout: float = 5.0) -> str | None:
    """The body of ``url`` as text, or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError):
        return None
