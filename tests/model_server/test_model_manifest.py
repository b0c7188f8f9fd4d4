"""manifest.py: write, read and verify model-directory manifests on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_supervisor.model_server.manifest import (
    MANIFEST_NAME,
    ManifestError,
    read_manifest,
    sha256_file,
    verify_model_dir,
    write_manifest,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"a": 1}')
    (d / "model.safetensors").write_bytes(os.urandom(4096))
    (d / "sub" / "x.bin").write_bytes(b"abc")
    (d / ".cache").mkdir()
    (d / ".cache" / "junk").write_text("ignored")
    write_manifest(d, {"kind": "test", "repo_id": "x/y"})
    return d


def test_manifest_lists_files_with_size_and_sha256(model_dir: Path) -> None:
    data = read_manifest(model_dir)
    assert data is not None
    assert data["source"] == {"kind": "test", "repo_id": "x/y"}
    assert set(data["files"]) == {"config.json", "model.safetensors", "sub/x.bin"}
    entry = data["files"]["model.safetensors"]
    assert entry["size"] == 4096
    assert entry["sha256"] == sha256_file(model_dir / "model.safetensors")
    assert verify_model_dir(model_dir) == []


def test_string_source_is_stored_as_kind(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    write_manifest(tmp_path, "gguf")
    assert read_manifest(tmp_path)["source"] == {"kind": "gguf"}


def test_detects_missing_truncated_corrupt_and_extra(model_dir: Path) -> None:
    (model_dir / "config.json").unlink()
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (model_dir / "sub" / "x.bin").write_bytes(b"abd")  # same size, other bytes
    (model_dir / "new.txt").write_text("surprise")
    problems = {p.path: p for p in verify_model_dir(model_dir, include_extra=True)}
    assert problems["config.json"].kind == "missing"
    assert problems["model.safetensors"].kind == "truncated"
    assert problems["sub/x.bin"].kind == "corrupt"
    assert problems["new.txt"].kind == "extra"
    # Size-only checks do not read the files: same-size corruption goes unnoticed.
    fast = {p.path for p in verify_model_dir(model_dir, check_hashes=False)}
    assert fast == {"config.json", "model.safetensors"}


def test_longer_file_is_corrupt(model_dir: Path) -> None:
    with open(model_dir / "sub" / "x.bin", "ab") as fh:
        fh.write(b"more")
    [problem] = verify_model_dir(model_dir)
    assert (problem.path, problem.kind) == ("sub/x.bin", "corrupt")


def test_no_manifest_and_bad_manifest(tmp_path: Path, model_dir: Path) -> None:
    assert read_manifest(tmp_path) is None
    [p] = verify_model_dir(tmp_path)
    assert (p.path, p.kind) == (MANIFEST_NAME, "missing")
    (model_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError):
        read_manifest(model_dir)
    [p] = verify_model_dir(model_dir)
    assert (p.path, p.kind) == (MANIFEST_NAME, "corrupt")
    [p] = verify_model_dir(tmp_path / "nope")
    assert (p.path, p.kind) == (".", "missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(model_dir: Path) -> None:
    target = model_dir / "model.safetensors"
    target.chmod(0)
    try:
        [p] = verify_model_dir(model_dir)
        assert (p.path, p.kind) == ("model.safetensors", "unreadable")
    finally:
        target.chmod(0o644)


def test_manifest_module_imports_no_heavy_libraries() -> None:
    code = (
        "import sys, llm_supervisor.model_server.manifest as m; "
        "print(sorted(x for x in ('torch', 'transformers', 'sanic') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []
