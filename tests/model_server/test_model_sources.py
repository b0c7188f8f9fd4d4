"""sources.py: hub download through a local hub (HF_ENDPOINT-style), fast failure when the hub
is unreachable, and resolution order. The GGUF conversion is covered by the SmolLM2 tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llm_supervisor.model_server.sources import choice as sources
from llm_supervisor.model_server.weights.manifest import read_manifest, verify_model_dir
from tests.model_fixtures import FakeHub, build_tiny_model, free_port


def test_select_hub_files_prefers_safetensors() -> None:
    names = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "onnx/model.onnx",
        "model.onnx",
        ".gitattributes",
        "generation_config.json",
        "tokenizer.model",
    ]
    assert sources.select_hub_files(names) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
    assert "pytorch_model.bin" in sources.select_hub_files(["config.json", "pytorch_model.bin"])


def test_fetch_from_hub_downloads_with_progress_and_manifest(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dest = tmp_path / "models" / "tiny"
    seen: list[tuple[float, dict]] = []
    sources.fetch_from_hub(
        "test/tiny-llama",
        dest,
        endpoint=fake_hub.url,
        on_progress=lambda f, **d: seen.append((f, d)),
    )
    names = sorted(p.name for p in dest.iterdir())
    assert "model.safetensors" in names and "README.md" not in names
    assert "model.onnx" not in names and ".cache" not in names
    manifest = read_manifest(dest)
    assert manifest["source"]["kind"] == "hub"
    assert manifest["source"]["revision"] == FakeHub.SHA
    assert verify_model_dir(dest) == []
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert seen[-1][1]["bytes_done"] == seen[-1][1]["bytes_total"] > 12_000_000
    # nothing left next to the destination but the fetch lock (heal/downloads: one at a time)
    assert sorted(p.name for p in dest.parent.iterdir()) == [".tiny.fetch.lock", "tiny"]


def test_fetch_refuses_digest_mismatch(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake_hub.corrupt.add("model.safetensors")
    dest = tmp_path / "models" / "tiny"
    with pytest.raises(sources.HubUnavailable, match="sha256"):
        sources.fetch_from_hub("test/tiny-llama", dest, endpoint=fake_hub.url)
    assert not dest.exists()
    # The wrong file was fetched twice and both copies are quarantined, never loaded.
    assert sorted(p.name for p in dest.parent.iterdir()) == [".tiny.fetch.lock",
                                                             ".tiny.quarantine"]
    assert len(list((dest.parent / ".tiny.quarantine").iterdir())) == 2


def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(sources.HubUnavailable):
        sources.fetch_from_hub(
            "test/tiny-llama", tmp_path / "x", endpoint=f"http://127.0.0.1:{free_port()}", timeout=5
        )
    assert time.monotonic() - started < 3
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(sources.HubUnavailable, match="HF_HUB_OFFLINE"):
        sources.fetch_from_hub("test/tiny-llama", tmp_path / "x")


def test_unknown_repo_is_unavailable(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(sources.HubUnavailable):
        sources.fetch_from_hub("nobody/nothing", tmp_path / "x", endpoint=fake_hub.url)


def test_resolve_prefers_existing_model_even_if_damaged(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "m")
    (model / "model.safetensors").write_bytes(b"")
    resolved = sources.resolve_model(model, "test/tiny-llama")
    assert resolved.origin == "local" and resolved.path == model
    assert resolved.source["repo_id"] == "test/tiny-llama"
    assert sources.has_model_files(model)
    assert not sources.has_model_files(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    assert not sources.has_model_files(tmp_path / "empty")


def test_stale_staging_dirs_are_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / ".model.staging-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    sources.clean_stale_staging(tmp_path / "model")
    assert not stale.exists()


def test_offline_gguf_is_found() -> None:
    gguf = sources.find_offline_gguf()
    assert gguf is not None and gguf.stat().st_size > 90_000_000
