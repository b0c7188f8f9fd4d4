"""A real llm-supervisord with the shipped model service and a model catalog of real GGUF
models (the offline SmolLM2 package and its llama.cpp requantizations), optionally behind a
real gateway. Shared by tests/models and bench/bench_models.py.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from pathlib import Path
from typing import Any

from tests.daemon_harness import PROJECT_DIR, free_port, wait_for
from tests.replicas.replicas_stack import ReplicaDaemon, consecutive_free_ports

PROMPT = "Write one short sentence about autumn."
# name -> .model text; each a distinct file, all small enough to load in about a second.
TEST_MODELS = {
    "alpha": "[Model]\nSource=offline\nEngine=llama.cpp\nContextSize=512\nSlots=2\n"
             "KeepAlive=infinity\n",
    "beta": "[Model]\nSource=offline:Q8_0\nEngine=llama.cpp\nContextSize=512\nSlots=2\n"
            "KeepAlive=infinity\n",
    "gamma": "[Model]\nSource=offline:Q4_0\nEngine=llama.cpp\nContextSize=512\nSlots=2\n"
             "KeepAlive=infinity\n",
}


class ModelsStack:
    """``models``: name → .model text written to the stack's MODELS_DIR."""

    def __init__(self, root: Path, default_model_dir: Path, models: dict[str, str] | None = None,
                 gateway: str | None = None, **env: str):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.models_dir = root / "catalog"
        self.models_dir.mkdir(exist_ok=True)
        for name, text in (TEST_MODELS if models is None else models).items():
            (self.models_dir / f"{name}.model").write_text(text)
        self.model_port = consecutive_free_ports(1)
        self.port_base = consecutive_free_ports(8)
        self.router_port = free_port()
        self.gateway_port = free_port()
        no_config = root / "no-config.toml"
        no_config.write_text("")
        self.daemon = ReplicaDaemon(root, {
            "LLM_SUPERVISOR_CONFIG": str(no_config),
            "GATEWAY_PROGRAM": gateway or "caddy",
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_ADMIN_PORT": str(free_port()),
            "DASHBOARD_PORT": "0",
            "MODEL_SERVICE_PORT": str(self.model_port),
            "MODEL_PATH": str(default_model_dir),
            "ENGINE": "llama.cpp",
            "HF_HUB_OFFLINE": "1",
            "HOST": "127.0.0.1",
            "MODELS_DIR": str(self.models_dir),
            "MODELS_PORT_BASE": str(self.port_base),
            "MODELS_ROUTER_PORT": str(self.router_port),
            **env,
        }, target="stack.target")
        units = ("model-service.service", "stack.target") + (
            ("gateway.service",) if gateway else ())
        for name in units:
            shutil.copy(PROJECT_DIR / "units" / name, self.daemon.units_dir / name)

    def start(self, wait_default: bool = True) -> ModelsStack:
        self.daemon.start()
        if wait_default:
            self.daemon.wait_state("model-service", "running", timeout=120, health="healthy")
        wait_for(lambda: self.models(), 30, "the models view")
        return self

    def stop(self) -> None:
        self.daemon.stop()

    # ------------------------------------------------------------------ views
    def models(self) -> dict[str, dict[str, Any]]:
        answer = self.daemon.client.get("/models")
        return {m["id"]: m for m in answer["models"]}

    def wait_model(self, name: str, state: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: (m := self.models()[name])["state"] == state and m, timeout,
                        f"model {name} to be {state}",
                        diagnostics=lambda: f"{self.models().get(name)}\n{self.daemon.log_tail()}")

    # ------------------------------------------------------------------ requests
    def post(self, path: str, body: dict[str, Any], port: int | None = None, timeout: float = 180
             ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.router_port, timeout=timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, \
                response.read()
        finally:
            conn.close()

    def generate(self, model: str | None, max_tokens: int = 4, port: int | None = None
                 ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}
        if model is not None:
            body["model"] = model
        status, _, data = self.post("/v1/completions", body, port)
        return status, json.loads(data)

    def model_pids(self) -> dict[str, int | None]:
        return {name: self.daemon.unit(view["unit"])["pid"]
                for name, view in self.models().items()}


def elapsed(since: float) -> float:
    return time.monotonic() - since
