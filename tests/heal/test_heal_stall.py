"""A stuck engine, for real: the model server (tiny transformers model) under the supervisor
with ``StallTimeoutSec=1``; its decoding step is made to block forever after three steps
(tests/heal/stall_injection). The request in flight gets a clear 503 within seconds (never a
hang), health turns 503, the supervisor restarts the server and it answers again. After the
restart a long answer that keeps producing tokens, slower in total than the stall timeout, is
not touched: progress, not wall time."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from llm_supervisor.supervisor.manager import Manager
from tests.daemon_harness import free_port
from tests.heal.heal_helpers import PROJECT
from tests.supervisor.manager_harness import run_manager, until

INJECTION = Path(__file__).resolve().parent / "stall_injection"


def _unit(model_dir: Path, port: int, marker: Path) -> str:
    return f"""[Service]
ExecStart={sys.executable} -m llm_supervisor.model_server
Environment=MODEL_PATH={model_dir} MODEL_SERVICE_PORT={port} USE_INT8=false DTYPE=float32
Environment=HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH={INJECTION}:{PROJECT}
Environment=HEAL_TEST_STALL_MARKER={marker} HEAL_TEST_STALL_AFTER=3 HEAL_TEST_STEP_DELAY=0.05
StallTimeoutSec=1
RestartSec=0.1
[Health]
Check=http://127.0.0.1:{port}/api/health
Interval=0.5
Retries=2
StartPeriod=120
[Install]
WantedBy=stack.target
"""


def test_stalled_engine_answers_503_and_is_restarted(tmp_path: Path, tiny_model_dir: Path
                                                     ) -> None:
    port = free_port()
    marker = tmp_path / "stalled-once"
    units = {"model.service": _unit(tiny_model_dir, port, marker)}
    url = f"http://127.0.0.1:{port}/api/generate"

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["model.service"]
        await until(lambda: str(runner.health) == "healthy", "model ready", 120)
        first_pid = runner.pid
        async with httpx.AsyncClient(timeout=30) as client:
            started = time.monotonic()
            stuck = await client.post(url, json={"prompt": "Hello", "max_length": 64})
            waited = time.monotonic() - started
            assert marker.exists()
            assert stuck.status_code == 503, stuck.text
            assert stuck.json()["error"]["type"] == "engine_stalled"
            assert "no token for" in stuck.json()["error"]["message"]
            assert waited < 10
            await until(lambda: runner.pid not in (None, first_pid)
                        and str(runner.health) == "healthy", "restarted and healthy", 120)
            assert "unhealthy" in "\n".join(runner.log.last(400))
            # 64 tokens × 0.05 s ≈ 3 s > StallTimeoutSec=1, but tokens keep coming.
            started = time.monotonic()
            long = await client.post(url, json={"prompt": "Hello", "max_length": 64,
                                                "ignore_eos": True})
            assert long.status_code == 200, long.text
            assert time.monotonic() - started > 1.5
            assert long.json()["generated_tokens"] == 64
        assert manager.environment_for(runner.unit)["STALL_TIMEOUT_SEC"] == "1"

    run_manager(tmp_path, units, [], scenario)
