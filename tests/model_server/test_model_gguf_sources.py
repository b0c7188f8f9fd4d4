"""GGUF model sources: a GGUF repo on a local hub (HF_ENDPOINT-style), the choice of one file
among several, the offline wheel's GGUF copied with a manifest, and re-creating either from the
source its manifest names after damage."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_supervisor.model_server.sources import choice as sources
from llm_supervisor.model_server.weights.manifest import read_manifest, verify_model_dir
from tests.model_fixtures import FakeHub

GGUF = sources.OFFLINE_GGUF


@pytest.fixture
def gguf_hub(tmp_path: Path, smollm2_gguf_dir: Path) -> Iterator[FakeHub]:
    """A local hub serving ``test/smol-gguf``: the GGUF (hard-linked, read-only use), a README,
    no safetensors."""
    repo = tmp_path / "hub-gguf"
    repo.mkdir()
    os.link(smollm2_gguf_dir / GGUF, repo / GGUF)
    (repo / "README.md").write_text("# gguf\n")
    hub = FakeHub({"test/smol-gguf": repo})
    try:
        yield hub
    finally:
        hub.close()


def test_select_gguf_prefers_a_common_quantization() -> None:
    names = ["m.Q8_0.gguf", "m.Q2_K.gguf", "m.Q4_K_M.gguf", "m.f16.gguf"]
    assert sources.select_gguf("r", names, None) == "m.Q4_K_M.gguf"
    assert sources.select_gguf("r", names, "*Q8_0.gguf") == "m.Q8_0.gguf"
    assert sources.select_gguf("r", ["b.gguf", "a.gguf"], None) == "a.gguf"
    with pytest.raises(sources.HubUnavailable, match="GGUF_FILE"):
        sources.select_gguf("r", names, "*Q5_K_S*")


def test_gguf_repo_downloads_one_gguf_with_manifest(
    gguf_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dest = tmp_path / "models" / "gguf"
    seen: list[float] = []
    # "auto": the repo has no safetensors, so its GGUF is what there is to serve
    sources.fetch_from_hub(
        "test/smol-gguf", dest, endpoint=gguf_hub.url, on_progress=lambda f, **_: seen.append(f)
    )
    assert sorted(p.name for p in dest.iterdir()) == [GGUF, "llm-supervisor-manifest.json"]
    assert sources.model_format(dest) == sources.FORMAT_GGUF
    manifest = read_manifest(dest)
    assert manifest["source"]["kind"] == "hub" and manifest["source"]["file"] == GGUF
    assert verify_model_dir(dest) == []
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)

    # damaged, then swapped for a fresh download of the same file (replace=True)
    with open(dest / GGUF, "r+b") as fh:
        fh.truncate(1000)
    assert verify_model_dir(dest, check_hashes=False)
    sources.fetch_from_hub("test/smol-gguf", dest, endpoint=gguf_hub.url, replace=True,
                           gguf_file=GGUF)
    assert verify_model_dir(dest) == []
    # nothing left next to the destination but the fetch lock (one fetch per model at a time)
    assert sorted(p.name for p in dest.parent.iterdir()) == [".gguf.fetch.lock", "gguf"]


def test_resolve_with_llama_cpp_engine_fetches_the_gguf(
    gguf_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", gguf_hub.url)
    dest = tmp_path / "m"
    resolved = sources.resolve_model(dest, "test/smol-gguf", engine="llama.cpp", gguf_file="*.gguf")
    assert resolved.origin == "hub" and resolved.source["file"] == GGUF
    assert sources.model_format(dest) == sources.FORMAT_GGUF


def test_offline_gguf_is_copied_and_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dest = tmp_path / "models" / "default"
    resolved = sources.resolve_model(dest, "TinyLlama/TinyLlama-1.1B-Chat-v1.0", engine="auto")
    assert resolved.origin == "package" and resolved.name == sources.OFFLINE_REPO_ID
    manifest = read_manifest(dest)
    assert manifest["source"]["kind"] == "package" and list(manifest["files"]) == [GGUF]
    wheel_copy = sources.find_offline_gguf()
    assert wheel_copy is not None and not (dest / GGUF).samefile(wheel_copy)  # a copy, never a link
    with open(dest / GGUF, "r+b") as fh:
        fh.seek(5_000_000)
        fh.write(b"\xff" * 64)
    assert verify_model_dir(dest)
    sources.install_offline_gguf(dest, replace=True)  # repair: tests/repair/test_repair_package_source.py
    assert verify_model_dir(dest) == []
    # a missing GGUF is still recognised as a GGUF model through its manifest
    (dest / GGUF).unlink()
    assert sources.model_format(dest) == sources.FORMAT_GGUF
    shutil.rmtree(dest)
