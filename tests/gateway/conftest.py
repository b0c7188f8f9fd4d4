"""One supervised stack (model service on the tiny model + the real Caddy gateway) shared by the
gateway tests of this directory: starting the model server is the slow part."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.supervisor_daemon import Daemon, Stack, free_port, require_programs


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    require_programs("caddy")
    root = tmp_path_factory.mktemp("gw")
    gateway_port, admin_port, model_port = free_port(), free_port(), free_port()
    daemon = Daemon(root, ["model-service.service", "gateway.service", "stack.target"], {
        "GATEWAY_PROGRAM": "caddy",
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
        yield Stack(daemon, gateway_port, admin_port, model_port)
    finally:
        daemon.stop()
