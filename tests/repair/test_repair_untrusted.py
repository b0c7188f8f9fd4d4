"""The model directory is untrusted input: whoever runs the model service (a container running as
root with the directory mounted read-write) can write the manifest, plant symlinks, and share the
Hugging Face cache. Each test crafts what such a container could write and checks that the
repair (run as the daemon runs it: ``engine.repair``) touches nothing outside the model
directory, and either heals it or says clearly why not."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from llm_supervisor.core.nofollow import UnsafePath
from llm_supervisor.model_server.weights.manifest import (
    MANIFEST_NAME,
    read_manifest,
    verify_model_dir,
)
from llm_supervisor.plugins.types import Diagnosis
from llm_supervisor.repair import engine, fetch, perms
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.store import Store
from llm_supervisor.repair.verify import Expected
from tests.model_fixtures import FakeHub, build_tiny_model, free_port
from tests.repair.repair_helpers import context, noop_progress

AUTO = Diagnosis("weights_load_failed", "weights failed to load", "model_repair")
REPO = "test/tiny-llama"
OTHER = 12345  # an owner the repair has no reason to give anything to (as root)


def run(ctx):
    return engine.repair(ctx, AUTO, noop_progress, Budget(), "model-service.service")


def state(path: Path) -> tuple:
    """What must not change about a file or directory outside the model directory."""
    st = path.lstat()
    content = (sorted(p.name for p in path.iterdir()) if stat.S_ISDIR(st.st_mode)
               else path.read_bytes())
    return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns, content


def make_foreign(path: Path, mode: int) -> None:
    """Mode bits (and, as root, an owner) that make ``path`` look unreadable to the repair:
    exactly what a perms fix-up that follows links would "fix"."""
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, OTHER, OTHER)


def small_model(root: Path) -> Path:
    """A model directory with a nested file and a manifest (no torch needed)."""
    model = root / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "test"}')
    (model / "sub" / "part.bin").write_bytes(os.urandom(2048))
    from llm_supervisor.model_server.weights.manifest import write_manifest

    write_manifest(model, {"kind": "hub", "repo_id": REPO})
    return model


def filled_store(model: Path, root: Path) -> Store:
    store = Store(root / "store")
    assert store.fill(model)
    return store


def offline(model: Path, store: Store | None = None, **env: str):
    extra = {"MODEL_REPAIR_STORE": str(store.root) if store else "off", **env}
    return context(model, HF_HUB_OFFLINE="1", **extra)


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_a_manifest_naming_files_outside_is_refused(tmp_path: Path, where: str) -> None:
    """Old behaviour: ``model_dir / "/abs"`` or ``model_dir / "../x"`` was fetched and written."""
    model = small_model(tmp_path)
    store = filled_store(model, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    payload = b"written by the repair"
    digest = hashlib.sha256(payload).hexdigest()
    (store.blobs / digest).write_bytes(payload)  # a source that would happily provide it
    name = str(outside / "victim") if where == "absolute" else "../outside/victim"
    data = json.loads((model / MANIFEST_NAME).read_text())
    data["files"][name] = {"size": len(payload), "sha256": digest}
    (model / MANIFEST_NAME).write_text(json.dumps(data))

    result = run(offline(model, store))
    assert not result.ok and result.give_up
    assert "manifest unusable" in result.message
    assert ("is an absolute path" if where == "absolute" else "'..' component") in result.message
    assert list(outside.iterdir()) == []


def test_non_hex_hashes_never_name_a_store_blob(tmp_path: Path) -> None:
    """Old behaviour: ``blob(sha256)`` was ``blobs / sha256``, whatever the string was."""
    store = Store(tmp_path / "state" / "store")
    store.blobs.mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not a blob")
    for bad in ("../../../secret", str(secret), "A" * 64, "0" * 63, ""):
        with pytest.raises(ValueError):
            store.blob(bad)
        assert not store.has(bad)
        with pytest.raises(fetch.SourceError):
            fetch.StoreSource(store).get("w.bin", Expected(10, bad), tmp_path / "work")
    link = store.blobs / ("0" * 64)
    link.symlink_to(secret)  # a link inside the store is not a blob either
    assert not store.has("0" * 64)


def test_a_symlinked_file_is_replaced_never_followed(tmp_path: Path) -> None:
    """The link points at a file with the right bytes but a foreign owner and mode 600: a
    repair that follows it would chmod/chown that file. It must replace the link instead."""
    model = small_model(tmp_path)
    store = filled_store(model, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "config.json"
    (model / "config.json").rename(target)
    make_foreign(target, 0o600)
    (model / "config.json").symlink_to(target)
    before = state(target)

    result = run(offline(model, store))
    assert result.ok, result
    assert result.details["replaced"] == {"config.json": "repair store"}
    assert not (model / "config.json").is_symlink()
    assert verify_model_dir(model) == []
    assert state(target) == before


def test_a_symlinked_directory_is_replaced_never_followed(tmp_path: Path) -> None:
    """``sub -> outside/sub``: the old repair chmod/chowned ``outside/sub`` as a directory "on
    the way" and wrote the re-fetched file into it."""
    model = small_model(tmp_path)
    store = filled_store(model, tmp_path)
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    for path in (model / "sub").iterdir():
        path.unlink()
    (model / "sub").rmdir()
    (model / "sub").symlink_to(outside / "sub")
    make_foreign(outside / "sub", 0o300)
    before = state(outside / "sub")

    result = run(offline(model, store))
    assert result.ok, result
    assert result.details["replaced"] == {"sub/part.bin": "repair store"}
    assert result.details["modes_fixed"] == []
    assert (model / "sub").is_dir() and not (model / "sub").is_symlink()
    assert verify_model_dir(model) == []
    assert state(outside / "sub") == before


def test_mode_fixes_refuse_links(tmp_path: Path) -> None:
    model = small_model(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("x")
    make_foreign(outside / "f", 0)
    (model / "link").symlink_to(outside / "f")
    (model / "linkdir").symlink_to(outside)
    before = state(outside / "f"), state(outside)
    for rel in ("link", "linkdir/f", "linkdir"):
        with pytest.raises(UnsafePath):
            perms.make_readable(model, rel, (0, 0))
    assert (state(outside / "f"), state(outside)) == before
    assert perms.unreadable_reason(model / "link") is None  # a link is not a mode problem


def test_the_recorded_endpoint_never_chooses_the_server(fake_hub: FakeHub, tmp_path: Path
                                                        ) -> None:
    """Old behaviour: without ``HF_ENDPOINT`` the manifest's ``endpoint`` was used."""
    model = build_tiny_model(tmp_path / "model")
    data = json.loads((model / MANIFEST_NAME).read_text())
    data["source"] = {"kind": "hub", "repo_id": REPO, "revision": FakeHub.SHA,
                      "endpoint": fake_hub.url}
    (model / MANIFEST_NAME).write_text(json.dumps(data))
    plan = engine.Plan(context(model))
    assert plan.endpoint is None  # huggingface_hub's default, i.e. the daemon's settings
    assert any("recorded endpoint" in note and "ignored" in note for note in plan.notes)

    # With HF_ENDPOINT set (here: nothing listening), that is what is asked, never the record.
    (model / "config.json").unlink()
    closed = f"http://127.0.0.1:{free_port()}"
    result = run(context(model, HF_ENDPOINT=closed, MODEL_REPAIR_STORE="off",
                         HF_HOME=str(tmp_path / "hf")))
    assert not result.ok
    assert f"hub {closed} unreachable" in result.details["sources"]
    assert fake_hub.requests == []


def test_recorded_repo_and_revision_must_be_plain_names(tmp_path: Path) -> None:
    model = small_model(tmp_path)
    data = json.loads((model / MANIFEST_NAME).read_text())
    data["source"] = {"kind": "hub", "repo_id": "../../etc", "revision": "../../../x",
                      "dtype": "save"}  # torch.save is no dtype for a re-conversion
    (model / MANIFEST_NAME).write_text(json.dumps(data))
    plan = engine.Plan(context(model, MODEL_ID=REPO))
    assert plan.repo_id == REPO and plan.revision is None and plan.dtype == "bfloat16"
    assert any("repo_id" in n for n in plan.notes) and any("revision" in n for n in plan.notes)


def test_cache_links_cannot_lead_outside_the_cache(fake_hub: FakeHub, tmp_path: Path) -> None:
    """A shared cache's ``snapshots/<rev>/<file>`` links can be rewritten by the container.
    Old behaviour: a copy of whatever the link led to was installed. (huggingface_hub itself
    only accepts revisions listed under ``snapshots/``; recorded revisions are checked too.)"""
    from huggingface_hub import hf_hub_download

    cache = tmp_path / "hf" / "hub"
    hf_hub_download(REPO, "config.json", cache_dir=cache, endpoint=fake_hub.url)
    fake_hub.close()
    model = build_tiny_model(tmp_path / "model")
    outside = tmp_path / "outside"
    outside.mkdir()
    (model / "config.json").rename(outside / "config.json")  # the right bytes, outside
    (snapshot,) = (cache / f"models--{REPO.replace('/', '--')}" / "snapshots").iterdir()
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(outside / "config.json")

    result = run(context(model, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache),
                         MODEL_REPAIR_STORE="off"))
    assert not result.ok
    assert "leads outside the cache" in " ".join(result.details["failed"]["config.json"])
    assert not (model / "config.json").exists()


def test_incomplete_cleanup_never_follows_links(tmp_path: Path) -> None:
    """Old behaviour: ``rglob`` from a cache folder that is a link deleted ``*.incomplete``
    files wherever it pointed."""
    model = small_model(tmp_path)
    store = filled_store(model, tmp_path)
    (model / "config.json").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = [outside / "a.incomplete", outside / "nested.incomplete"]
    for victim in victims:
        victim.write_text("someone else's download")
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    (cache / f"models--{REPO.replace('/', '--')}").symlink_to(outside)
    (model / ".cache").symlink_to(outside)
    own = model / "stale.incomplete"
    own.write_text("ours to delete")

    result = run(offline(model, store, HF_HUB_CACHE=str(cache)))
    assert result.ok, result
    assert all(v.read_text() == "someone else's download" for v in victims)
    assert not own.exists()
    assert result.details["incomplete_removed"] == [str(own.resolve())]


def test_a_file_where_a_directory_should_be_is_kept(tmp_path: Path) -> None:
    """Nothing is deleted that cannot be replaced: a file named like a directory on the way
    stays, and the reason says so."""
    model = small_model(tmp_path)
    store = filled_store(model, tmp_path)
    for path in (model / "sub").iterdir():
        path.unlink()
    (model / "sub").rmdir()
    (model / "sub").write_text("my notes")
    result = run(offline(model, store))
    assert not result.ok
    assert "file where a directory should be" in " ".join(result.details["failed"]["sub/part.bin"])
    assert (model / "sub").read_text() == "my notes"


def test_a_crafted_manifest_does_not_reach_the_store(tmp_path: Path) -> None:
    """The store is filled from the manifest after every healthy start: a link in the model
    directory must not make it read (and later hand out) a file from elsewhere."""
    model = small_model(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (model / "config.json").rename(outside / "config.json")
    (model / "config.json").symlink_to(outside / "config.json")
    store = Store(tmp_path / "store")
    added = store.fill(model)
    assert added == ["sub/part.bin"]
    entry = read_manifest(model)["files"]["config.json"]
    assert not store.has(entry["sha256"])
