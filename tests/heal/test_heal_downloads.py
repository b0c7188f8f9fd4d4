"""Downloads, against a local hub server speaking the real protocol (tests.model_fixtures'
FakeHub; no network): a file with a wrong hash is quarantined and fetched once more; two
fetches of one model at once run one after the other (the second finds the model in place and
downloads nothing); a download interrupted after some files resumes with only the rest."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llm_supervisor.model_server.sources import choice as sources
from llm_supervisor.model_server.weights.fetch_lock import download_dir
from llm_supervisor.model_server.weights.manifest import verify_model_dir
from tests.model_fixtures import FakeHub


class _FirstFetch(set[str]):
    """Names served corrupt on the first fetch only (a flaky mirror, a bit flipped in transit).
    A fetch asks twice (HEAD for the metadata, then GET)."""

    def __init__(self, names: set[str], asks: int = 2) -> None:
        super().__init__(names)
        self.asks = asks

    def __contains__(self, name: object) -> bool:
        if super().__contains__(name) and self.asks > 0:
            self.asks -= 1
            return True
        return False


def _file_gets(hub: FakeHub, name: str) -> int:
    return sum(1 for r in hub.requests if r.startswith("GET ") and r.endswith(f"/{name}"))


def test_wrong_hash_is_quarantined_and_fetched_again(
        fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake_hub.corrupt = _FirstFetch({"model.safetensors"})
    dest = tmp_path / "models" / "tiny"
    sources.fetch_from_hub("test/tiny-llama", dest, endpoint=fake_hub.url)
    assert verify_model_dir(dest) == []
    quarantined = list((dest.parent / ".tiny.quarantine").iterdir())
    assert [p.name.split(".")[0] for p in quarantined] == ["model"]
    assert _file_gets(fake_hub, "model.safetensors") == 2
    assert _file_gets(fake_hub, "config.json") == 1  # only the wrong file again


def test_two_fetches_of_one_model_run_one_after_the_other(
        fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dest = tmp_path / "models" / "tiny"
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            sources.fetch_from_hub("test/tiny-llama", dest, endpoint=fake_hub.url)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert verify_model_dir(dest) == []
    assert _file_gets(fake_hub, "model.safetensors") == 1


def test_an_interrupted_download_resumes_with_the_rest(
        fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dest = tmp_path / "models" / "tiny"
    import huggingface_hub  # fetch_from_hub imports hf_hub_download when it runs

    original = huggingface_hub.hf_hub_download
    calls: list[str] = []

    def dies_on_the_weights(repo_id: str, filename: str, **kwargs: object) -> str:
        calls.append(filename)
        if filename == "model.safetensors":
            raise ConnectionResetError("connection lost")
        return original(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", dies_on_the_weights)
    with pytest.raises(sources.HubUnavailable, match="connection lost"):
        sources.fetch_from_hub("test/tiny-llama", dest, endpoint=fake_hub.url)
    kept = sorted(p.name for p in download_dir(dest).iterdir() if not p.name.startswith("."))
    assert "config.json" in kept and "model.safetensors" not in kept
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", original)
    before = len(fake_hub.requests)
    sources.fetch_from_hub("test/tiny-llama", dest, endpoint=fake_hub.url)
    assert verify_model_dir(dest) == []
    again = [r for r in fake_hub.requests[before:] if r.startswith("GET ")]
    assert any(r.endswith("/model.safetensors") for r in again)
    assert not any(r.endswith("/config.json") for r in again), again
