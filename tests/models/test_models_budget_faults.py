"""The memory budget and the faults, against a real daemon with real GGUF models.

Proves: under a budget that fits the default model and one more, a request for a second model
evicts the least recently used idle one and a later request reloads it; a model streaming a
long answer is never evicted under it (the load waits for it to drain, both answers complete);
a budget too small for a model answers 503 + Retry-After naming who holds the memory and never
starts the unit (no crash loop); a damaged or missing model file is rebuilt/repaired on the next
activation while the other models keep serving; a daemon SIGKILLed while a model loads leaves
nothing behind and the restarted daemon serves that model.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from pathlib import Path

import psutil
import pytest

from tests.daemon_harness import wait_for
from tests.model_fixtures import cached_smollm2_gguf_dir
from tests.models.models_stack import PROMPT, TEST_MODELS, ModelsStack

# Test models with an 8192-cell KV cache (377 MiB): each needs at least its weights + KV
# (473 / 520 MiB), at most its estimate with the engine overhead (653 / 700 MiB). The default
# model needs 284-380 MiB. 1150M fits the default and one of them, never two.
ONE_EXTRA = "1150M"
BIG_CONTEXT = {name: text.replace("ContextSize=512", "ContextSize=8192")
               for name, text in TEST_MODELS.items()}


@pytest.fixture
def make_stack(tmp_path: Path):
    stacks: list[ModelsStack] = []

    def make(models: dict[str, str] = TEST_MODELS, **env: str) -> ModelsStack:
        stack = ModelsStack(tmp_path / f"s{len(stacks)}", cached_smollm2_gguf_dir(), models,
                            **env)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()


def test_lru_eviction_and_reload(make_stack) -> None:
    stack = make_stack(BIG_CONTEXT, MODEL_MEMORY_BUDGET=ONE_EXTRA)
    assert stack.generate("alpha")[0] == 200
    assert stack.generate("beta")[0] == 200
    views = stack.models()
    assert views["alpha"]["state"] == "unloaded" and views["alpha"]["evictions"] == 1
    assert views["beta"]["state"] == "loaded"
    assert views["default"]["state"] == "loaded"  # pinned: never a candidate
    assert stack.daemon.unit("model@alpha")["state"] == "inactive"
    assert any(e.get("event") == "unit_state_changed" and e.get("unit") == "model@alpha.service"
               and "evicted" in e.get("reason", "") for e in stack.daemon.events())
    assert stack.generate("alpha")[0] == 200
    views = stack.models()
    assert views["alpha"]["loads"] == 2 and views["beta"]["state"] == "unloaded"


def test_a_busy_model_is_drained_not_evicted(make_stack) -> None:
    stack = make_stack(BIG_CONTEXT, MODEL_MEMORY_BUDGET=ONE_EXTRA)
    assert stack.generate("alpha")[0] == 200
    streamed: dict[str, object] = {}

    def long_answer() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.router_port, timeout=300)
        conn.request("POST", "/v1/completions", json.dumps({
            "model": "alpha", "prompt": PROMPT, "max_tokens": 160, "temperature": 0,
            "stream": True}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        streamed["status"] = response.status
        streamed["events"] = [line for line in response.read().decode().splitlines()
                              if line.startswith("data:")]
        conn.close()

    thread = threading.Thread(target=long_answer)
    thread.start()
    wait_for(lambda: stack.models()["alpha"]["in_flight"] == 1, 30, "alpha's stream to start")
    assert stack.generate("beta")[0] == 200  # waits for alpha to drain, then takes its place
    thread.join(300)
    assert streamed["status"] == 200
    events = streamed["events"]
    assert isinstance(events, list) and events[-1] == "data: [DONE]"
    finish = [json.loads(e[5:])["choices"][0].get("finish_reason") for e in events[:-1]]
    assert {"length", "stop"} & set(finish)  # the whole answer: not cut by an eviction
    assert stack.models()["alpha"]["state"] == "unloaded"


def test_a_budget_too_small_is_a_clear_503_and_no_crash_loop(make_stack) -> None:
    stack = make_stack(MODEL_MEMORY_BUDGET="450M")
    for _ in range(3):
        status, headers, body = stack.post("/v1/completions",
                                           {"model": "alpha", "prompt": "x", "max_tokens": 1})
        assert status == 503 and int(headers["retry-after"]) >= 1
        message = json.loads(body)["error"]["message"]
        assert "MODEL_MEMORY_BUDGET" in message and "default" in message
    assert stack.daemon.unit("model@alpha")["state"] == "inactive"
    assert not any(e.get("unit") == "model@alpha.service" and e.get("to") == "starting"
                   for e in stack.daemon.events())
    assert stack.models()["alpha"]["state"] == "failed"
    assert stack.generate(None, 1)[0] == 200  # the default model keeps serving


def test_damaged_and_missing_model_files_are_repaired(make_stack) -> None:
    stack = make_stack()
    assert stack.generate("beta")[0] == 200
    assert stack.generate("alpha")[0] == 200
    default_pid = stack.daemon.unit("model-service")["pid"]
    models = Path(stack.daemon.state_dir) / "models"
    stores = Path(stack.daemon.state_dir) / "repair-store"
    wait_for(lambda: any((stores / "model@alpha" / "blobs").iterdir()), 120,
             "alpha's own reserve copy (the store its repair reads)")
    for name in ("beta", "alpha"):
        stack.daemon.ctl("models", "unload", name, check=True)
    beta_file = next((models / "beta").glob("*.gguf"))
    with open(beta_file, "r+b") as file:  # flipped bytes: loads silently without a checksum
        file.seek(beta_file.stat().st_size // 2)
        file.write(b"\x00" * 4096)
    alpha_file = next((models / "alpha").glob("*.gguf"))
    alpha_file.unlink()
    for name in ("beta", "alpha"):
        status, body = stack.generate(name)
        assert status == 200, body
    assert next((models / "beta").glob("*.gguf")).stat().st_size == beta_file.stat().st_size
    assert alpha_file.is_file()
    assert stack.daemon.unit("model-service")["pid"] == default_pid  # others unaffected
    assert stack.generate(None, 1)[0] == 200


def test_daemon_sigkilled_while_a_model_loads(make_stack) -> None:
    stack = make_stack()
    answer: dict[str, object] = {}

    def ask() -> None:
        try:
            answer["status"] = stack.generate("beta")[0]
        except (OSError, http.client.HTTPException) as exc:
            answer["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    unit = wait_for(lambda: (u := stack.daemon.unit("model@beta"))["state"] == "starting" and
                    u["pid"] and u, 60, "model@beta to be starting")
    pids = [unit["pid"]]
    with contextlib.suppress(psutil.Error):
        pids += [c.pid for c in psutil.Process(unit["pid"]).children(recursive=True)]
    stack.daemon.kill9()
    thread.join(60)
    assert "error" in answer or answer.get("status") != 200
    stack.daemon.start()

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(p) for p in pids), 30, "the half-loaded model server to be gone")
    assert stack.generate("beta")[0] == 200
    views = stack.models()
    assert views["beta"]["state"] == "loaded" and views["beta"]["loads"] == 1
    owned = [p for p in psutil.process_iter(["environ"])
             if (p.info["environ"] or {}).get("LLM_SUPERVISOR_UNIT") == "model@beta.service"]
    assert len(owned) <= 2  # the server (and at most a helper child), not two servers
