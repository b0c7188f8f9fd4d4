"""A crashing engine: the model server's engine dies at start (SIGILL) N times in a row → the
same model is served by the other engine, and status says why. Without another engine at hand
(transformers crashing, no GGUF) the normal restart policy and its start limit apply: no
endless loop. The crash is real (SIGILL), the server a stand-in (tests/heal/engine_standin.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from llm_supervisor.supervisor.manager import Manager
from tests.daemon_harness import free_port
from tests.heal.heal_helpers import PROJECT
from tests.supervisor.manager_harness import run_manager, until


def _unit(model_dir: Path, port: int, engine: str, crash_engine: str) -> str:
    return f"""[Service]
ExecStart={sys.executable} -m tests.heal.engine_standin
Environment=MODEL_PATH={model_dir} ENGINE={engine} CRASH_ENGINE={crash_engine} PORT={port}
Environment=PYTHONPATH={PROJECT}
RestartSec=0.05
StartLimitBurst=4
[Health]
Check=http://127.0.0.1:{port}/
Interval=0.2
StartPeriod=20
[Install]
WantedBy=stack.target
"""


def test_llama_cpp_dying_at_start_falls_back_to_transformers(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.Q4_1.gguf").write_bytes(b"GGUF")
    port = free_port()
    units = {"model.service": _unit(model_dir, port, "llama.cpp", "llama.cpp")}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["model.service"]
        await until(lambda: str(runner.health) == "healthy", "healthy on transformers", 60)
        heal = manager.status_of(runner)["heal"]
        assert heal["line"] == ("healed: llama.cpp crashed at start 2× (SIGILL) → serving "
                                "with transformers")
        assert heal["overrides"] == {"ENGINE": "transformers"}
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "engine=transformers"
        assert runner.log.last(200).count("[llm-supervisord] killed by SIGILL") == 2

    run_manager(tmp_path, units, [], scenario)


def test_transformers_dying_with_a_gguf_at_hand_falls_back_to_llama_cpp(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.Q4_1.gguf").write_bytes(b"GGUF")
    port = free_port()
    units = {"model.service": _unit(model_dir, port, "transformers", "transformers")}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["model.service"]
        await until(lambda: str(runner.health) == "healthy", "healthy on llama.cpp", 60)
        assert manager.status_of(runner)["heal"]["overrides"] == {"ENGINE": "llama.cpp"}
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "engine=llama.cpp"

    run_manager(tmp_path, units, [], scenario)


def test_no_other_engine_means_the_start_limit_not_a_loop(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"  # no GGUF: transformers has no other engine to go to
    model_dir.mkdir()
    port = free_port()
    units = {"model.service": _unit(model_dir, port, "transformers", "transformers")}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["model.service"]
        await until(lambda: str(runner.state) == "failed", "failed", 60)
        assert "start limit hit" in runner.reason
        assert "heal" not in manager.status_of(runner)

    run_manager(tmp_path, units, [], scenario)


def test_both_engines_crashing_is_no_ping_pong(tmp_path: Path) -> None:
    """llama.cpp crashes, transformers crashes too: one switch, then the start limit."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.Q4_1.gguf").write_bytes(b"GGUF")
    port = free_port()
    text = _unit(model_dir, port, "llama.cpp", "llama.cpp").replace(
        "CRASH_ENGINE=llama.cpp", "CRASH_ENGINE=any").replace(
        "ExecStart=", "ExecStart=/usr/bin/env CRASH_ENGINE_ALL=1 ")
    units = {"model.service": text}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["model.service"]
        await until(lambda: str(runner.state) == "failed", "failed", 60)
        assert "start limit hit" in runner.reason
        heal = manager.status_of(runner)["heal"]
        assert heal["overrides"] == {"ENGINE": "transformers"}
        assert heal["heals"] == {"engine_crash": 1}

    run_manager(tmp_path, units, [], scenario)
