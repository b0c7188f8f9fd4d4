"""manifest.py: write, read and verify model-directory manifests on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_supervisor.model_server.weights.manifest import (
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
        "import sys, llm_supervisor.model_server.weights.manifest as m; "
        "print(sorted(x for x in ('torch', 'transformers', 'sanic') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


# --------------------------------------------------------------------------- untrusted manifests
# The model directory (and so the manifest) is writable by the model-service container; the
# supervisor's repair acts on it as root. A manifest is used whole or not at all.

GOOD_SHA = "0" * 64


def _write_raw_manifest(model_dir: Path, files: dict) -> None:
    data = {"format": 1, "source": {"kind": "test"}, "files": files}
    (model_dir / MANIFEST_NAME).write_text(json.dumps(data))


@pytest.mark.parametrize(("name", "entry", "why"), [
    ("/etc/cron.d/x", {"size": 1, "sha256": GOOD_SHA}, "is an absolute path"),
    ("../../x", {"size": 1, "sha256": GOOD_SHA}, "'..' component"),
    ("sub/../../x", {"size": 1, "sha256": GOOD_SHA}, "'..' component"),
    ("./config.json", {"size": 1, "sha256": GOOD_SHA}, "'.' component"),
    ("sub//x", {"size": 1, "sha256": GOOD_SHA}, "empty"),
    ("sub\\..\\x", {"size": 1, "sha256": GOOD_SHA}, "backslash"),
    ("x\x00y", {"size": 1, "sha256": GOOD_SHA}, "NUL"),
    (".cache/x", {"size": 1, "sha256": GOOD_SHA}, "hidden component"),
    (MANIFEST_NAME, {"size": 1, "sha256": GOOD_SHA}, "the manifest itself"),
    ("w.bin", {"size": 1, "sha256": "../../../etc/passwd"}, "no valid sha256"),
    ("w.bin", {"size": 1, "sha256": "A" * 64}, "no valid sha256"),
    ("w.bin", {"size": 1, "sha256": "0" * 63}, "no valid sha256"),
    ("w.bin", {"size": -1, "sha256": GOOD_SHA}, "no valid size"),
    ("w.bin", {"size": True, "sha256": GOOD_SHA}, "no valid size"),
    ("w.bin", {"size": "1", "sha256": GOOD_SHA}, "no valid size"),
    ("w.bin", "not an object", "is not an object"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_untrusted_entries_reject_the_whole_manifest(model_dir: Path, name: str, entry: object,
                                                      why: str) -> None:
    good = read_manifest(model_dir)["files"]
    _write_raw_manifest(model_dir, {**good, name: entry})
    with pytest.raises(ManifestError) as raised:
        read_manifest(model_dir)
    message = str(raised.value)
    assert str(model_dir / MANIFEST_NAME) in message and why in message
    assert repr(name[:200]) in message  # names the bad entry
    [p] = verify_model_dir(model_dir)
    assert (p.path, p.kind) == (MANIFEST_NAME, "corrupt")


def test_a_symlinked_manifest_is_never_followed(model_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    (model_dir / MANIFEST_NAME).rename(elsewhere)
    (model_dir / MANIFEST_NAME).symlink_to(elsewhere)
    with pytest.raises(ManifestError, match="not a regular file"):
        read_manifest(model_dir)


def test_a_fifo_manifest_does_not_block(model_dir: Path) -> None:
    import threading

    (model_dir / MANIFEST_NAME).unlink()
    os.mkfifo(model_dir / MANIFEST_NAME)
    outcome: list[BaseException | object] = []

    def read() -> None:
        try:
            outcome.append(read_manifest(model_dir))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert outcome, "read_manifest blocked on a FIFO"
    assert isinstance(outcome[0], ManifestError)


def test_symlinks_in_the_model_dir_are_damage_not_followed(model_dir: Path, tmp_path: Path
                                                          ) -> None:
    """Same bytes behind a link still fail: the repair would otherwise write through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (model_dir / "config.json").rename(outside / "config.json")
    (model_dir / "config.json").symlink_to(outside / "config.json")
    (model_dir / "sub").rename(outside / "sub")
    (model_dir / "sub").symlink_to(outside / "sub")
    problems = {p.path: p for p in verify_model_dir(model_dir)}
    assert problems["config.json"].kind == "corrupt"
    assert "symbolic link" in problems["config.json"].detail
    assert problems["sub/x.bin"].kind == "corrupt"
    assert "sub is a symbolic link" in problems["sub/x.bin"].detail
    assert set(problems) == {"config.json", "sub/x.bin"}


def test_a_manifest_is_never_built_over_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ManifestError, match="not a regular file"):
        write_manifest(tmp_path, "test")
    assert not (tmp_path / MANIFEST_NAME).exists()
