"""Damaged model files: the server logs ONE ``weights_load_failed`` event (file, model_path,
error_type, error) and exits with WEIGHTS_LOAD_FAILED, promptly, so the supervisor can tell a
damaged model from any other crash."""

from __future__ import annotations

import os
import shutil
import struct
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from llm_supervisor.core.exit_codes import WEIGHTS_LOAD_FAILED
from tests.model_fixtures import ModelServer, build_tiny_model, start_model_server


def _truncate(d: Path) -> None:
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def _empty(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"")


def _corrupt_header(d: Path) -> None:
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 : 8 + n] = b"{" + b"\x00garbage" * ((n - 1) // 8) + b"\x00" * ((n - 1) % 8)
    w.write_bytes(bytes(data))


def _missing_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _missing_config(d: Path) -> None:
    (d / "config.json").unlink()


def _flip_tensor_bytes(d: Path) -> None:
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1000:-900] = os.urandom(100)  # inside tensor data: loads silently
    w.write_bytes(bytes(data))


CASES: list[tuple[str, Callable[[Path], None], str, str, dict[str, str]]] = [
    ("truncated", _truncate, "model.safetensors", "SafetensorError", {}),
    ("empty", _empty, "model.safetensors", "SafetensorError", {}),
    ("corrupt-header", _corrupt_header, "model.safetensors", "SafetensorError", {}),
    ("missing-weights", _missing_weights, "model.safetensors", "OSError", {}),
    ("missing-config", _missing_config, "config.json", "ValueError", {}),
    (
        "bit-rot",
        _flip_tensor_bytes,
        "model.safetensors",
        "ManifestMismatch",
        {"VERIFY_MODEL": "sha256"},
    ),
]


def _assert_failed(server: ModelServer, file_name: str, error_type: str, model_dir: Path) -> None:
    code = server.wait_exit(timeout=60)
    exited = time.time()
    assert code == WEIGHTS_LOAD_FAILED, server.log_text()
    failures = [e for e in server.events() if e.get("event") == "weights_load_failed"]
    assert len(failures) == 1, server.log_text()
    event = failures[0]
    assert Path(event["file"]).name == file_name
    assert event["model_path"] == str(model_dir)
    assert event["error_type"] == error_type
    assert event["error"]
    assert event["level"] == "error"
    logged = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    assert exited - logged < 2.0, "exit must follow the failure promptly"


@pytest.mark.parametrize(
    ("case", "damage", "file_name", "error_type", "env"), CASES, ids=[c[0] for c in CASES]
)
def test_damaged_model_exits_with_weights_load_failed(
    tmp_path: Path,
    case: str,
    damage: Callable[[Path], None],
    file_name: str,
    error_type: str,
    env: dict[str, str],
) -> None:
    model = build_tiny_model(tmp_path / "model")
    damage(model)
    server = start_model_server(model, **env)
    try:
        _assert_failed(server, file_name, error_type, model)
    finally:
        server.stop()


def test_unreadable_weights_exit_with_permission_error(tmp_path: Path) -> None:
    """chmod 000 on the weights. Root reads anything, so as root the server runs without the
    capabilities that bypass file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    wrapper = None
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        wrapper = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    model = build_tiny_model(tmp_path / "model")
    (model / "model.safetensors").chmod(0)
    server = start_model_server(model, wrapper=wrapper)
    try:
        _assert_failed(server, "model.safetensors", "PermissionError", model)
    finally:
        server.stop()
        (model / "model.safetensors").chmod(0o644)
