"""Verification with real files: which files are missing, truncated, corrupt or unreadable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_supervisor.repair import fetch, perms
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.context import Limits
from llm_supervisor.repair.verify import from_hub, from_manifest, verify
from tests.model_fixtures import FakeHub, build_tiny_model
from tests.repair.repair_helpers import DAMAGE, WEIGHTS

EXPECTED_KIND = {
    "truncated": "truncated",
    "deleted": "missing",
    "bytes-flipped": "corrupt",
    "chmod-000": "unreadable",
    "config-deleted": "missing",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damage_is_found_exactly(tmp_path: Path, damage: str) -> None:
    model = build_tiny_model(tmp_path / "model")
    expectation = from_manifest(model)
    assert expectation is not None and verify(model, expectation) == []
    file = DAMAGE[damage](model)
    problems = verify(model, expectation)
    assert [(p.path, p.kind) for p in problems] == [(file, EXPECTED_KIND[damage])]


def test_mode_bits_are_judged_even_for_root(tmp_path: Path) -> None:
    """``os.access`` says yes to root; an unprivileged server would still fail."""
    model = build_tiny_model(tmp_path / "model")
    (model / WEIGHTS).chmod(0)
    model.chmod(0o700)  # fine for its owner
    assert perms.unreadable_reason(model) is None
    assert "does not let uid" in perms.unreadable_reason(model / WEIGHTS)
    assert perms.make_readable(model, WEIGHTS) == "mode 0 -> 644"
    assert perms.unreadable_reason(model / WEIGHTS) is None
    if os.geteuid() == 0:  # someone else's directory without search permission for us
        other = tmp_path / "other"
        other.mkdir(mode=0o750)
        os.chown(other, 12345, 12345)
        assert "does not let uid 0" in perms.unreadable_reason(other)


def test_hub_metadata_is_an_expectation_too(fake_hub: FakeHub, tmp_path: Path) -> None:
    """Without a manifest, the hub's sizes and LFS sha256 say what the files should be."""
    info = fetch.hub_info("test/tiny-llama", None, fake_hub.url, timeout=5)
    expectation = from_hub(info, ["config.json", WEIGHTS, "tokenizer.json"])
    weights = expectation.files[WEIGHTS]
    assert weights.sha256 and weights.size
    model = build_tiny_model(tmp_path / "model")
    (model / "llm-supervisor-manifest.json").unlink()
    assert verify(model, expectation) == []
    DAMAGE["bytes-flipped"](model)
    (problem,) = verify(model, expectation)
    assert problem.path == WEIGHTS and problem.kind == "corrupt" and "sha256" in problem.detail


def test_unreachable_hub_fails_fast(tmp_path: Path) -> None:
    from tests.model_fixtures import free_port

    with pytest.raises(fetch.HubUnreachable):
        fetch.hub_info("test/tiny-llama", None, f"http://127.0.0.1:{free_port()}", timeout=2)


def test_budget_streak_window_and_health() -> None:
    now = [0.0]
    budget = Budget(clock=lambda: now[0])
    limits = Limits(attempts=2, max_per_window=3, window_sec=100)
    assert budget.exhausted("u", limits) is None
    budget.record("u", limits, "first")
    budget.record("u", limits, "second")
    assert "2 repair attempt(s) in a row" in budget.exhausted("u", limits)
    assert budget.last_message("u") == "second"
    budget.healthy("u")  # the streak ends when the unit is healthy again
    assert budget.exhausted("u", limits) is None
    budget.record("u", limits, "third")
    budget.healthy("u")
    assert "3 repairs within 100s" in budget.exhausted("u", limits)  # flapping: window cap
    now[0] = 150.0  # the window slides
    assert budget.exhausted("u", limits) is None
    budget.record("u", limits, "x")
    budget.reset("u")  # a person asked for a repair
    assert budget.exhausted("u", limits) is None


def test_limits_come_from_the_unit_environment() -> None:
    limits = Limits.from_env({"MODEL_REPAIR_ATTEMPTS": "5", "MODEL_REPAIR_WINDOW_SEC": "60",
                              "MODEL_REPAIR_MAX_PER_WINDOW": "bogus"})
    assert limits == Limits(attempts=5, max_per_window=10, window_sec=60.0)
