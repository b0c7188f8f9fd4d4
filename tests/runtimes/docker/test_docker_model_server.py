"""The real model server (``python -m llm_supervisor.model_server``) in a container run by the
daemon, with the tiny test model mounted read-only, answering ``/api/generate`` through the
published port. The image is the imported busybox rootfs; Python and our venv come from the
host through read-only bind mounts (no registry, no image build)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.model_fixtures import free_port
from tests.runtimes.docker.docker_fixtures import REPO_ROOT, Daemon

pytestmark = pytest.mark.docker


def test_model_server_in_a_container_generates(daemon: Daemon, busybox_image: str,
                                               host_python_volumes: list[str],
                                               tiny_model_dir: Path) -> None:
    port = free_port()
    volumes = "\n".join(f"Volumes={v}" for v in [*host_python_volumes,
                                                  f"{tiny_model_dir}:/models/tiny:ro"])
    daemon.write_unit("model.service", f"""[Unit]
Description=model server in a container

[Service]
Runtime=docker
Restart=on-failure
TimeoutStartSec=120
TimeoutStopSec=10
Environment=MODEL_PATH=/models/tiny MODEL_SERVICE_HOST=0.0.0.0 MODEL_SERVICE_PORT=5000
Environment=USE_INT8=false DTYPE=float32 HF_HUB_OFFLINE=1 HOME=/tmp PYTHONUNBUFFERED=1
Environment=TOKENIZERS_PARALLELISM=false PYTHONPATH={REPO_ROOT / "src"} LOG_FORMAT=json

[Health]
Check=http://127.0.0.1:{port}/api/health
Interval=0.5
Timeout=2
Retries=3
StartPeriod=120

[Container]
Image={busybox_image}
Command={sys.executable} -m llm_supervisor.model_server
Ports=127.0.0.1:{port}:5000
Memory=2g
{volumes}

[Install]
WantedBy=test.target
""")
    daemon.start()
    daemon.wait_healthy("model", timeout=120)
    health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()
    assert health["status"] == "ready"
    response = httpx.post(f"http://127.0.0.1:{port}/api/generate",
                          json={"prompt": "Hello", "max_length": 8, "temperature": 0.7},
                          timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body.get("generated_text", body.get("text")), str), body
    container = daemon.container_of("model.service")
    assert container.attrs["HostConfig"]["Memory"] == 2 << 30
    assert "weights_load_failed" not in daemon.unit_log("model", 400)
    assert daemon.stop() == 0
