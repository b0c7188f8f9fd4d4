"""Many models behind one endpoint, end to end: a real daemon, the real model service and real
GGUF models (the offline SmolLM2 and its llama.cpp requantizations), requests through the router
and through the real Caddy gateway.

Proves: routing by the ``model`` field on the three generation paths (no field = the default
model, the seed's request unchanged; streaming passes through; unknown = 404 naming the known
models); activation on the first request; /v1/models and ``llm-supervisorctl models`` views;
``models load|unload``; KeepAlive; 32 clients asking for 3 unloaded models at once (each loaded
exactly once, nothing left waiting or in flight).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_harness import free_port, wait_for
from tests.model_fixtures import build_tiny_model, cached_smollm2_gguf_dir
from tests.models.models_stack import PROMPT, TEST_MODELS, ModelsStack

CATALOG = {**TEST_MODELS, "delta": "[Model]\nSource=offline\nEngine=llama.cpp\n"
           "ContextSize=512\nSlots=1\nKeepAlive=1s\n"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelsStack]:
    root = tmp_path_factory.mktemp("models-e2e")
    # The transformers engine too: the tiny random Llama fixture, copied (repair may write).
    tiny = build_tiny_model(root / "tiny-model")
    catalog = {**CATALOG, "tiny": f"[Model]\nSource={tiny}\nEngine=transformers\nSlots=2\n"
                                  "KeepAlive=infinity\n"}
    instance = ModelsStack(root, cached_smollm2_gguf_dir(), catalog, gateway="caddy",
                           USE_INT8="false", DASHBOARD_PORT=str(free_port()),
                           DASHBOARD_SAMPLE_S="0.5")
    instance.start()
    yield instance
    instance.stop()


def starts_of(stack: ModelsStack, unit: str) -> int:
    return sum(1 for e in stack.daemon.events()
               if e.get("event") == "unit_state_changed" and e.get("unit") == unit
               and e.get("to") == "starting")


def gateway_up(stack: ModelsStack) -> bool:
    try:
        status, _, _ = stack.post("/v1/completions", {"prompt": "x", "max_tokens": 1},
                                  port=stack.gateway_port, timeout=30)
        return status == 200
    except OSError:
        return False


def test_routing_by_model_field_through_the_gateway(stack: ModelsStack) -> None:
    wait_for(lambda: gateway_up(stack), 60, "the gateway to route /v1")
    # The seed's request, unchanged: no model field, the old /api/generate body.
    status, _, body = stack.post("/api/generate", {"prompt": PROMPT, "max_length": 8},
                                 port=stack.gateway_port)
    assert status == 200, body
    assert "generated_text" in json.loads(body)
    assert stack.models()["alpha"]["state"] == "unloaded"

    # A named model is activated by its first request, streaming through the gateway.
    conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=180)
    conn.request("POST", "/v1/chat/completions", json.dumps({
        "model": "alpha", "stream": True, "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": PROMPT}]}),
        {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    events = [line for line in response.read().decode().splitlines() if line.startswith("data:")]
    conn.close()
    assert events[-1] == "data: [DONE]" and len(events) >= 3
    alpha = stack.models()["alpha"]
    assert (alpha["state"], alpha["loads"], alpha["requests"]) == ("loaded", 1, 1)
    assert alpha["memory_bytes"] is None or alpha["memory_bytes"] > 50 << 20
    stack.daemon.wait_state("model@alpha", "running", timeout=30)  # its own health check

    # /v1/models lists the whole catalog with states; an unknown model is a 404 naming them.
    conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=30)
    conn.request("GET", "/v1/models")
    listed = {m["id"]: m for m in json.loads(conn.getresponse().read())["data"]}
    conn.close()
    assert {"default", "alpha", "beta", "gamma", "delta"} <= set(listed)
    assert listed["alpha"]["state"] == "loaded" and listed["gamma"]["state"] == "unloaded"
    assert listed["default"]["pinned"] is True
    status, _, body = stack.post("/v1/completions", {"model": "nope", "prompt": "x"},
                                 port=stack.gateway_port)
    error = json.loads(body)["error"]
    assert status == 404 and "alpha" in error["message"] and "beta" in error["message"]


def test_cli_lists_loads_and_unloads(stack: ModelsStack) -> None:
    stack.generate("alpha")
    listing = stack.daemon.ctl("models", check=True).stdout
    rows = {line.split()[0]: line for line in listing.splitlines()[1:] if line.strip()}
    assert "loaded" in rows["alpha"] and "unloaded" in rows["gamma"]
    assert "pinned" in rows["default"] and "memory budget" in listing
    result = stack.daemon.ctl("models", "unload", "alpha", check=True)
    assert "alpha is unloaded" in result.stdout
    assert stack.daemon.unit("model@alpha")["state"] == "inactive"
    result = stack.daemon.ctl("models", "load", "alpha", check=True)
    assert "alpha is loaded" in result.stdout
    bad = stack.daemon.ctl("models", "load", "nope")
    assert bad.returncode != 0 and "not in the catalog" in bad.stdout + bad.stderr


def test_keep_alive_stops_an_idle_model(stack: ModelsStack) -> None:
    status, _ = stack.generate("delta")
    assert status == 200
    stack.wait_model("delta", "unloaded", timeout=30)
    assert stack.daemon.unit("model@delta")["state"] == "inactive"
    status, _ = stack.generate("delta")  # and it comes back on the next request
    assert status == 200


def test_32_clients_3_unloaded_models_each_loaded_once(stack: ModelsStack) -> None:
    for name in ("alpha", "beta", "gamma"):
        stack.daemon.ctl("models", "unload", name, check=True)
    before = {n: starts_of(stack, f"model@{n}.service") for n in ("alpha", "beta", "gamma")}
    loads_before = {n: stack.models()[n]["loads"] for n in ("alpha", "beta", "gamma")}
    results: list[int] = []
    lock = threading.Lock()
    go = threading.Event()

    def client(index: int) -> None:
        go.wait()
        status, _ = stack.generate(("alpha", "beta", "gamma")[index % 3], max_tokens=2)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(300)
    assert results == [200] * 32
    views = stack.models()
    for name in ("alpha", "beta", "gamma"):
        assert views[name]["loads"] == loads_before[name] + 1, views[name]
        assert starts_of(stack, f"model@{name}.service") == before[name] + 1
        assert views[name]["state"] == "loaded"
    # No slot leaked. A client has its whole answer a moment before the router sees the model
    # server close the connection and gives the slot back: give it that moment.
    wait_for(lambda: all((view["in_flight"], view["waiting"]) == (0, 0)
                         for name, view in stack.models().items()
                         if name in ("alpha", "beta", "gamma")),
             10, "every slot given back", diagnostics=lambda: str(stack.models()))


def test_bad_requests_get_json_errors(stack: ModelsStack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.router_port, timeout=30)
    conn.putrequest("POST", "/v1/completions")  # announces 2 MB: refused before any is read
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "2000000")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "error" in json.loads(response.read())
    conn.close()
    # Not JSON: the default model's own validation answers (422/400), not the router crashing.
    status, _, body = stack.post("/v1/completions", {"model": 5, "prompt": PROMPT,
                                                     "max_tokens": 1})
    assert status in (200, 400, 422), body
    assert stack.generate(None, 1)[0] == 200


def test_sizes_are_measured_after_load(stack: ModelsStack) -> None:
    stack.generate("alpha")
    measured = wait_for(lambda: stack.models()["alpha"]["measured_bytes"], 10,
                        "a measured RSS for alpha")
    assert 50 << 20 < measured < 2 << 30
    saved = json.loads((Path(stack.daemon.state_dir) / "models" / "measured.json").read_text())
    assert saved["alpha"] == measured
    metrics = stack.daemon.client.request("GET", "/models/metrics").text
    assert 'llm_supervisor_model_loads_total{model="alpha"}' in metrics
    assert 'llm_supervisor_model_loaded{model="alpha",state="loaded"} 1.0' in metrics


def test_the_transformers_engine_serves_a_catalog_model(stack: ModelsStack) -> None:
    view = stack.models()["tiny"]
    assert view["state"] == "unloaded" and view["engine"] == "transformers"
    status, body = stack.generate("tiny", max_tokens=3)
    assert status == 200 and body["usage"]["completion_tokens"] >= 1, body
    health = json.loads(http_get(int(stack.models()["tiny"]["upstream"].rsplit(":", 1)[1]),
                                 "/api/health"))
    assert health.get("engine") == "transformers", health
    assert stack.models()["tiny"]["state"] == "loaded"


def http_get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_the_dashboard_charts_every_model_that_serves(stack: ModelsStack) -> None:
    """Requests/s and tokens/s per model: the default model and a catalog model loaded on
    demand each get their own series in the dashboard's history (and its model picker)."""
    dashboard = f"http://127.0.0.1:{stack.daemon.env['DASHBOARD_PORT']}"

    # The model server counts tokens as the engine makes them and a request when its answer is
    # sent, so one scrape can hold a request's tokens and the next its count: wait for both.
    series = ("requests_per_s", "tokens_per_s")
    last: dict[str, Any] = {}

    def charted() -> dict[str, Any] | None:
        assert stack.generate("alpha")[0] == 200
        assert stack.generate(None)[0] == 200
        models = httpx.get(dashboard + "/api/history", timeout=30).json()["models"]
        last.update(models)
        shown = all(any(v and v > 0 for v in models.get(name, {}).get(column, []))
                    for name in ("model@alpha", "model-service") for column in series)
        return models if shown else None

    wait_for(charted, 90, "requests/s and tokens/s of both models in the dashboard's history",
             diagnostics=lambda: str({name: {c: last[name][c][-10:] for c in series}
                                      for name in last}))


def test_monitor_model_shows_every_loaded_model(stack: ModelsStack) -> None:
    """``llm-supervisorctl monitor --model``: the default model, then each loaded catalog model
    with what its own server says (engine, tokens/s from its /metrics)."""
    assert stack.generate("alpha")[0] == 200
    stack.wait_model("alpha", "loaded")
    unit = stack.models()["alpha"]["unit"].removesuffix(".service")
    out = stack.daemon.ctl("monitor", "--model", check=True).stdout
    default, _, catalog = out.partition(f"{unit}:")
    assert "ready" in default and "engine llama.cpp" in default
    assert "model-service:" not in out  # the default model is the first section, once
    assert "ready" in catalog and "engine llama.cpp" in catalog and "requests " in catalog, out
    unloaded = [name for name, view in stack.models().items() if view["state"] != "loaded"]
    assert not any(f"model@{name}:" in out for name in unloaded), out
