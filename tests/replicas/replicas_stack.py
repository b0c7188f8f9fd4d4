"""A real llm-supervisord running MODEL_REPLICAS model servers (llama.cpp engine on the shipped
SmolLM2 GGUF: it starts in seconds) behind a real gateway (Traefik or Caddy), and a steady stream
of requests through that gateway. Shared by tests/replicas and bench/bench_replicas.py.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests import daemon_harness
from tests.daemon_harness import PROJECT_DIR, free_port, wait_for
from tests.ports import consecutive_free_ports

UNITS = ("model-service.service", "gateway.service", "stack.target")
PROMPT = "Napisz krótki wiersz o jesieni"


class ReplicaDaemon(daemon_harness.Daemon):
    """The shipped units, with none of the caller's LLM_SUPERVISOR_/MODEL_/HF_ settings."""

    def inherited_env(self) -> dict[str, str]:
        return {k: v for k, v in super().inherited_env().items()
                if not k.startswith(("LLM_SUPERVISOR_", "MODEL_", "HF_"))}


class ReplicaStack:
    def __init__(self, root: Path, model_dir: Path, replicas: int, gateway: str = "caddy"):
        self.replicas = replicas
        self.gateway = gateway
        self.model_port = consecutive_free_ports(replicas)
        self.gateway_port = free_port()
        no_config = root / "no-config.toml"
        root.mkdir(parents=True, exist_ok=True)
        no_config.write_text("")
        self.daemon = ReplicaDaemon(root, {
            "LLM_SUPERVISOR_CONFIG": str(no_config),
            "MODEL_REPLICAS": str(replicas),
            "GATEWAY": gateway,
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_ADMIN_PORT": str(free_port()),
            "DASHBOARD_PORT": str(free_port()),
            "MODEL_SERVICE_PORT": str(self.model_port),
            "MODEL_PATH": str(model_dir),
            "ENGINE": "llama.cpp",
            "HF_HUB_OFFLINE": "1",
            "HOST": "127.0.0.1",
        }, target="stack.target")
        for name in UNITS:
            shutil.copy(PROJECT_DIR / "units" / name, self.daemon.units_dir / name)

    @property
    def instances(self) -> list[str]:
        return ["model-service"] + [f"model-service@{i}" for i in range(2, self.replicas + 1)]

    def start(self, timeout: float = 240) -> ReplicaStack:
        self.daemon.start()
        self.wait_ready(["gateway", *self.instances], timeout)
        self.wait_routed(self.replicas)
        return self

    def wait_ready(self, names: list[str], timeout: float) -> None:
        for name in names:
            self.daemon.wait_state(name, "running", timeout=timeout, health=None)
            wait_for(lambda name=name: self.daemon.unit(name)["health"] in ("healthy", "none"),
                     timeout, f"{name} to be healthy", interval=0.2,
                     diagnostics=self.daemon.log_tail)

    def wait_routed(self, upstreams: int, timeout: float = 30) -> None:
        """Until the gateway's /api route has ``upstreams`` upstreams."""
        def routed() -> bool:
            routes = self.daemon.client.get("/gateway")["routes"]
            api = next(r for r in routes if r["path_prefix"] == "/api")
            return len(api["upstreams"]) == upstreams

        wait_for(routed, timeout, f"/api with {upstreams} upstreams", interval=0.2)

    def stop(self) -> None:
        self.daemon.stop()


def generate(port: int, max_length: int = 8, timeout: float = 60) -> tuple[int, bytes]:
    """One POST /api/generate on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = json.dumps({"prompt": PROMPT, "max_length": max_length, "temperature": 0.7})
        connection.request("POST", "/api/generate", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class RequestStream:
    """``clients`` threads sending /api/generate through the gateway back to back until
    :meth:`stop`. A fresh connection per request: what is measured is the gateway and the
    replicas, not a client's reuse of a kept-alive connection the gateway closed when its config
    changed (an idempotent client would retry that itself)."""

    def __init__(self, port: int, clients: int = 2, max_length: int = 8):
        self.port = port
        self.clients = clients
        self.max_length = max_length
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _client(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, body = generate(self.port, self.max_length)
                outcome = "ok" if status == 200 else f"HTTP {status}: {body[:120]!r}"
            except OSError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if outcome == "ok":
                    self.ok += 1
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.failures[outcome] += 1
            if outcome != "ok":
                time.sleep(0.05)  # a client backs off a little; keeps a fast-failing loop sane

    def start(self) -> RequestStream:
        self._threads = [threading.Thread(target=self._client, daemon=True,
                                          name=f"client-{i}") for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)

    @property
    def lost(self) -> int:
        return sum(self.failures.values())

    def __enter__(self) -> RequestStream:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait_for_ok(self, count: int, timeout: float = 60) -> None:
        wait_for(lambda: self.ok >= count, timeout, f"{count} answered requests")
