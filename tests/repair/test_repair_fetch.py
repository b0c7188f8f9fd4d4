"""Repair with real files and real HTTP: the local fake hub (HF_ENDPOINT), the local Hugging Face
cache, and no endpoint at all. Only bad files are fetched; nothing unreplaceable is deleted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from llm_supervisor.model_server.weights.manifest import (
    MANIFEST_NAME,
    sha256_file,
    verify_model_dir,
)
from llm_supervisor.plugins.types import Diagnosis
from llm_supervisor.repair import engine
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.fetch import WORKDIR_PREFIX
from tests.model_fixtures import FakeHub, build_tiny_model, free_port
from tests.repair.repair_helpers import WEIGHTS, context, delete_config, flip_middle, noop_progress, truncate

AUTO = Diagnosis("weights_load_failed", "weights failed to load", "model_repair")
REPO = "test/tiny-llama"


def run(ctx, diagnosis: Diagnosis = AUTO, budget: Budget | None = None):
    return engine.repair(ctx, diagnosis, noop_progress, budget or Budget(), "model-service.service")


def fill_cache(hub: FakeHub, cache_dir: Path, files: list[str]) -> None:
    """Download into a real hub cache layout (snapshots/ symlinks to blobs/)."""
    from huggingface_hub import hf_hub_download

    for name in files:
        hf_hub_download(REPO, name, cache_dir=cache_dir, endpoint=hub.url)


def resolves(hub: FakeHub) -> list[str]:
    return [r.split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.requests
            if r.startswith("GET") and "/resolve/" in r]


def test_hub_refetches_only_the_bad_files(fake_hub: FakeHub, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    delete_config(model)
    untouched = (model / "tokenizer.json").stat().st_ino
    result = run(context(model, HF_ENDPOINT=fake_hub.url, MODEL_ID=REPO,
                         HF_HOME=str(tmp_path / "hf")))
    assert result.ok, result
    assert result.details["replaced"] == {WEIGHTS: "hub", "config.json": "hub"}
    assert sorted(resolves(fake_hub)) == ["config.json", WEIGHTS]
    assert verify_model_dir(model) == []
    assert (model / "tokenizer.json").stat().st_ino == untouched
    assert oct((model / WEIGHTS).stat().st_mode & 0o777) == "0o644"
    assert not list(model.glob(WORKDIR_PREFIX + "*"))


def test_hub_serving_wrong_bytes_falls_back_to_the_cache(fake_hub: FakeHub, tmp_path: Path
                                                         ) -> None:
    """huggingface_hub#3643: a download can "succeed" with the wrong bytes; we check ourselves."""
    cache = tmp_path / "hf" / "hub"
    fill_cache(fake_hub, cache, [WEIGHTS])
    fake_hub.corrupt.add(WEIGHTS)
    model = build_tiny_model(tmp_path / "model")
    flip_middle(model)
    result = run(context(model, HF_ENDPOINT=fake_hub.url, HF_HOME=str(tmp_path / "hf")))
    assert result.ok, result
    assert result.details["replaced"] == {WEIGHTS: "local cache"}
    assert verify_model_dir(model) == []


def test_offline_without_any_endpoint_uses_the_local_cache(fake_hub: FakeHub, tmp_path: Path
                                                            ) -> None:
    cache = tmp_path / "hf" / "hub"
    fill_cache(fake_hub, cache, [WEIGHTS, "config.json"])
    fake_hub.close()  # nothing answers any more
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    delete_config(model)
    result = run(context(model, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache)))
    assert result.ok, result
    assert set(result.details["replaced"].values()) == {"local cache"}
    assert "HF_HUB_OFFLINE" in result.details["sources"]
    assert verify_model_dir(model) == []


def test_unreachable_endpoint_uses_the_local_cache(fake_hub: FakeHub, tmp_path: Path) -> None:
    fill_cache(fake_hub, tmp_path / "hf" / "hub", [WEIGHTS])
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    result = run(context(model, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                         HF_HOME=str(tmp_path / "hf")))
    assert result.ok, result
    assert "unreachable" in result.details["sources"]
    assert result.details["replaced"] == {WEIGHTS: "local cache"}


def test_stale_incomplete_downloads_are_cleared(fake_hub: FakeHub, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    stale_local = model / ".cache" / "huggingface" / "download" / "model.safetensors.ab12.incomplete"
    stale_blob = tmp_path / "hf" / "hub" / "models--test--tiny-llama" / "blobs" / "ab12.incomplete"
    for stale in (stale_local, stale_blob):
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"half a download")
    result = run(context(model, HF_ENDPOINT=fake_hub.url, HF_HOME=str(tmp_path / "hf")))
    assert result.ok, result
    assert not stale_local.exists() and not stale_blob.exists()
    assert sorted(result.details["incomplete_removed"]) == sorted([str(stale_blob),
                                                                   str(stale_local)])


def test_nothing_is_deleted_that_cannot_be_replaced(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.corrupt.update({WEIGHTS, "config.json"})
    model = build_tiny_model(tmp_path / "model")
    flip_middle(model)
    damaged = sha256_file(model / WEIGHTS)
    (model / "config.json").unlink()
    (model / "config.json").mkdir()  # a directory where a file should be
    (model / "config.json" / "notes.txt").write_text("mine")
    (model / "my-notes.txt").write_text("not in the manifest")
    result = run(context(model, HF_ENDPOINT=fake_hub.url, HF_HOME=str(tmp_path / "hf")))
    assert not result.ok and not result.give_up
    assert set(result.details["failed"]) == {WEIGHTS, "config.json"}
    assert "sha256" in " ".join(result.details["failed"][WEIGHTS])
    assert "could not repair 2 file(s)" in result.message
    assert sha256_file(model / WEIGHTS) == damaged  # still there, as it was
    assert (model / "config.json" / "notes.txt").read_text() == "mine"
    assert (model / "my-notes.txt").read_text() == "not in the manifest"
    assert not list(model.glob(WORKDIR_PREFIX + "*"))


def test_the_budget_gives_up_with_a_reason(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.corrupt.add(WEIGHTS)
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    ctx = context(model, HF_ENDPOINT=fake_hub.url, HF_HOME=str(tmp_path / "hf"),
                  MODEL_REPAIR_ATTEMPTS="2")
    budget = Budget()
    first = run(ctx, budget=budget)
    assert not first.ok and not first.give_up
    second = run(ctx, budget=budget)
    assert second.give_up
    assert "2 repair attempt(s) in a row" in second.message
    assert "llm-supervisorctl repair model-service" in second.message
    assert "sha256" in second.message  # what went wrong last time
    assert (model / WEIGHTS).exists()
    # By hand it is tried again (the budget is for automatic repairs), and reported.
    fake_hub.corrupt.clear()
    manual = run(ctx, Diagnosis("manual", "by hand"), budget)
    assert manual.ok and verify_model_dir(model) == []


def test_verify_only_changes_nothing(fake_hub: FakeHub, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    truncate(model)
    before = sha256_file(model / WEIGHTS)
    result = run(context(model, HF_ENDPOINT=fake_hub.url),
                 Diagnosis("manual", "by hand", details={"verify_only": True}))
    assert not result.ok
    assert result.details["problems"] == [
        f"{WEIGHTS}: truncated (size {(model / WEIGHTS).stat().st_size} < expected "
        f"{verify_model_dir(model)[0].detail.split()[-1]})"]
    assert sha256_file(model / WEIGHTS) == before
    assert fake_hub.requests == []  # with a manifest, verifying needs no network


def test_without_manifest_the_hub_metadata_decides(fake_hub: FakeHub, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    (model / MANIFEST_NAME).unlink()
    truncate(model)
    result = run(context(model, HF_ENDPOINT=fake_hub.url, MODEL_ID=REPO))
    assert result.ok, result
    assert result.details["origin"] == "hub"
    assert result.details["replaced"] == {WEIGHTS: "hub"}


def test_without_manifest_or_hub_it_gives_up_at_once(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    (model / MANIFEST_NAME).unlink()
    truncate(model)
    result = run(context(model, HF_HUB_OFFLINE="1", MODEL_ID=REPO))
    assert result.give_up
    assert "cannot tell which files" in result.message and "HF_HUB_OFFLINE" in result.message
    assert (model / WEIGHTS).exists()


@pytest.mark.slow
def test_offline_gguf_is_reconverted_for_a_gguf_model(smollm2_dir: Path, tmp_path: Path) -> None:
    """The SmolLM2 conversion is deterministic: re-converting reproduces the recorded bytes."""
    model = tmp_path / "model"
    shutil.copytree(smollm2_dir, model)
    flip_middle(model)
    (model / "tokenizer_config.json").unlink()
    os.chmod(model / "config.json", 0)
    result = run(context(model, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf")))
    assert result.ok, result
    assert result.details["replaced"] == {WEIGHTS: "offline GGUF",
                                          "tokenizer_config.json": "offline GGUF"}
    assert result.details["modes_fixed"] == ["config.json: mode 0 -> 644"]
    assert verify_model_dir(model) == []


def test_permissions_alone_are_fixed_without_fetching(fake_hub: FakeHub, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    (model / WEIGHTS).chmod(0)
    (model / "config.json").chmod(0o200)
    result = run(context(model, HF_ENDPOINT=fake_hub.url))
    assert result.ok, result
    assert result.details["replaced"] == {}
    assert sorted(result.details["modes_fixed"]) == ["config.json: mode 200 -> 644",
                                                     f"{WEIGHTS}: mode 0 -> 644"]
    assert fake_hub.requests == []
    assert verify_model_dir(model) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_ownership_follows_the_model_directory(fake_hub: FakeHub, tmp_path: Path) -> None:
    """What ``sudo ./fix_model_service.sh`` did with chown: repaired files belong to whoever
    owns the model directory, not to the (root) daemon."""
    model = build_tiny_model(tmp_path / "model")
    for path in (model, *model.iterdir()):
        os.chown(path, 4321, 4321)
    (model / "config.json").chmod(0)
    os.chown(model / "config.json", 0, 0)
    truncate(model)
    result = run(context(model, HF_ENDPOINT=fake_hub.url))
    assert result.ok, result
    for name in ("config.json", WEIGHTS):
        st = (model / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 4321, 0o644), name


def test_the_store_keeps_verified_copies_and_repairs_offline(tmp_path: Path) -> None:
    from llm_supervisor.repair.store import Store, store_for

    model = build_tiny_model(tmp_path / "model")
    store = store_for({"STATE_DIR": str(tmp_path / "state")}, "model-service")
    assert store is not None and store.root == tmp_path / "state" / "repair-store" / "model-service"
    assert store_for({"STATE_DIR": "/x", "MODEL_REPAIR_STORE": "off"}, "m") is None
    flip_middle(model)  # damaged before the first fill: never stored
    added = store.fill(model)
    assert WEIGHTS not in added and "config.json" in added
    shutil.copy(build_tiny_model(tmp_path / "pristine") / WEIGHTS, model / WEIGHTS)
    assert store.fill(model) == [WEIGHTS]
    stale = store.blob("0" * 64)
    stale.write_bytes(b"from an older model")
    store.fill(model)
    assert not stale.exists()  # pruned: only the current manifest's files are kept

    truncate(model)
    delete_config(model)
    result = run(context(model, HF_HUB_OFFLINE="1", MODEL_REPAIR_STORE=str(store.root)))
    assert result.ok, result
    assert result.details["replaced"] == {WEIGHTS: "repair store", "config.json": "repair store"}
    assert verify_model_dir(model) == []
    assert isinstance(store, Store)
