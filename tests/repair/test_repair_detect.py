"""Detection: the model server's exit code and event, classic signatures, the last run only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llm_supervisor.core.exit_codes import WEIGHTS_LOAD_FAILED
from llm_supervisor.repair import detect, verify
from llm_supervisor.repair.context import RepairContext, is_model_unit
from tests.model_fixtures import build_tiny_model, start_model_server
from tests.repair.repair_helpers import model_unit, truncate

STARTED = "[llm-supervisord] started (pid 1234)"


def test_a_real_server_failure_is_recognised_from_its_event(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    server = start_model_server(model)
    try:
        code = server.wait_exit(60)
    finally:
        server.stop()
    lines = [STARTED, *server.log_text().splitlines()]
    diagnosis = detect.diagnose(model, code, lines)
    assert code == WEIGHTS_LOAD_FAILED
    assert diagnosis is not None and diagnosis.kind == "weights_load_failed"
    assert Path(diagnosis.details["file"]).name == "model.safetensors"
    assert diagnosis.details["error_type"] == "SafetensorError"
    assert "model.safetensors" in diagnosis.summary
    # The event alone (a supervisor that lost the exit code) is enough.
    assert detect.diagnose(model, None, lines).kind == "weights_load_failed"


def test_exit_code_alone_is_enough(tmp_path: Path) -> None:
    diagnosis = detect.diagnose(tmp_path, WEIGHTS_LOAD_FAILED, [STARTED, "Traceback ..."])
    assert diagnosis is not None and diagnosis.kind == "weights_load_failed"


def test_classic_signatures(tmp_path: Path) -> None:
    model = tmp_path / "models" / "tinyllama"
    cases = [
        "OSError: Unable to load weights from pytorch checkpoint file for "
        f"'{model}/pytorch_model.bin' at '{model}/pytorch_model.bin'.",
        "safetensors_rust.SafetensorError: Error while deserializing header: "
        "incomplete metadata, file not fully covered",
        "SafetensorError: Error while deserializing header: header too small",
        f"OSError: Error no file named model.safetensors, or pytorch_model.bin, found in "
        f"directory {model}.",
        f"FileNotFoundError: [Errno 2] No such file or directory: '{model}/config.json'",
        f"PermissionError: [Errno 13] Permission denied: '{model}/model.safetensors'",
    ]
    for line in cases:
        diagnosis = detect.diagnose(model, 1, [STARTED, "loading", line, "exiting"])
        assert diagnosis is not None, line
        assert diagnosis.kind == "weights_signature"
        assert diagnosis.plugin == "model_repair"


def test_unrelated_failures_are_not_ours(tmp_path: Path) -> None:
    model = tmp_path / "model"
    unrelated = [
        "FileNotFoundError: [Errno 2] No such file or directory: '/etc/llm/prompt.txt'",
        "PermissionError: [Errno 13] Permission denied: '/var/run/other.sock'",
        "OSError: [Errno 98] Address already in use",
        "RuntimeError: CUDA out of memory",
    ]
    for line in unrelated:
        assert detect.diagnose(model, 1, [STARTED, line]) is None, line


def test_only_the_last_run_counts(tmp_path: Path) -> None:
    event = json.dumps({"event": "weights_load_failed", "file": "x/model.safetensors",
                        "error_type": "SafetensorError", "error": "header too small"})
    earlier = [STARTED, event, "[llm-supervisord] exited with code 65"]
    later = [STARTED.replace("1234", "5678"), "serving", "killed"]
    assert detect.diagnose(tmp_path, None, earlier + later) is None
    assert detect.diagnose(tmp_path, None, earlier + later[:1] + [event]) is not None


def test_after_a_kill_a_stat_only_check_finds_damage(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    quick = lambda: verify.quick_problems(model)  # noqa: E731
    assert detect.diagnose(model, None, [STARTED], quick) is None  # intact: normal restart
    os.truncate(model / "model.safetensors", 100)
    diagnosis = detect.diagnose(model, None, [STARTED], quick)
    assert diagnosis is not None and diagnosis.kind == "model_files_damaged"
    assert "model.safetensors: truncated" in diagnosis.details["problems"][0]
    # No manifest: nothing to compare with, so no claim of damage.
    (model / "llm-supervisor-manifest.json").unlink()
    assert detect.diagnose(model, None, [STARTED], quick) is None


def test_which_units_are_model_units() -> None:
    assert is_model_unit(model_unit())
    assert is_model_unit(model_unit(exec_start=["/usr/bin/llm-model-server", "--x"]))
    assert not is_model_unit(model_unit(exec_start=["caddy", "run"]))
    assert is_model_unit(model_unit(exec_start=["my-server"], environment={"MODEL_PATH": "/m"}))
    env = {"MODEL_PATH": "/srv/models/tiny"}
    assert RepairContext.for_unit(model_unit(exec_start=["caddy"]), env) is None
    ctx = RepairContext.for_unit(model_unit(), env)
    assert ctx is not None and ctx.model_dir == Path("/srv/models/tiny")
    assert ctx.unit_name == "model-service"
