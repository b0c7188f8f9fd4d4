"""The model server's part of a rolling restart: SIGUSR1 makes /api/health say ``draining``
(still 200 for the supervisor; the gateway's check of replicas wants ``ready``: Caddy matches
the body, Traefik asks ``?require=ready`` and gets 503) while requests are still served, and the
live ``inflight`` count the drain waits on."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from llm_supervisor.gateway.caddy import READY_BODY
from tests.daemon_harness import wait_for
from tests.model_fixtures import running_server


def test_sigusr1_drains_the_model_server_without_refusing_requests(
        smollm2_gguf_dir: Path) -> None:
    with running_server(smollm2_gguf_dir, ENGINE="llama.cpp") as server, server.client() as http:
        ready = http.get("/api/health")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert ready.json()["inflight"] == 0
        assert re.search(READY_BODY, ready.text)
        assert http.get("/api/health?require=ready").status_code == 200
        server.proc.send_signal(signal.SIGUSR1)

        def draining() -> bool:
            return http.get("/api/health").json()["status"] == "draining"


        wait_for(draining, 10, "health to say draining")
        health = http.get("/api/health")
        assert health.status_code == 200  # the supervisor must not restart it meanwhile
        assert not re.search(READY_BODY, health.text)  # Caddy stops sending to it
        assert http.get("/api/health?require=ready").status_code == 503  # and so does Traefik
        reply = http.post("/api/generate", json={"prompt": "Hej", "max_length": 4})
        assert reply.status_code == 200, reply.text  # what still arrives is served
        assert server.proc.poll() is None
