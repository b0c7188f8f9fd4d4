"""The memory budget's decisions: what fits loads at once; the least recently used idle,
unpinned model is stopped first; busy models are drained, never stopped under their requests;
loading models are waited for; pinned ones are never candidates; when nothing can make room the
error names the need, the budget and who holds the memory. Also the budget setting's syntax."""

from __future__ import annotations

import pytest

from llm_supervisor.supervisor.memory_budget import NoRoom, Resident, parse_budget, plan

MiB = 1 << 20


def r(name: str, size: int, *, pinned: bool = False, busy: int = 0, loading: bool = False,
      used: float = 0.0) -> Resident:
    return Resident(name, size * MiB, pinned, busy, loading, used)


@pytest.mark.parametrize(("need", "residents", "evict", "wait_for", "wait_load"), [
    (100, [], [], [], []),
    (100, [r("a", 300)], [], [], []),
    (300, [r("a", 300, used=2), r("b", 300, used=1)], ["b"], [], []),
    (500, [r("a", 300, used=2), r("b", 300, used=1)], ["b", "a"], [], []),
    (300, [r("a", 300, busy=1, used=1), r("b", 300, used=2)], ["b"], [], []),
    (300, [r("a", 300, busy=2), r("p", 300, pinned=True)], [], ["a"], []),
    (300, [r("a", 300, used=1), r("l", 300, loading=True)], ["a"], [], []),
    (500, [r("a", 300, used=1), r("l", 300, loading=True)], [], [], ["l"]),
])
def test_plan(need: int, residents: list[Resident], evict: list[str], wait_for: list[str],
              wait_load: list[str]) -> None:
    decision = plan("new", need * MiB, 600 * MiB, residents)
    assert (decision.evict, decision.wait_for, decision.wait_for_load) == (evict, wait_for,
                                                                           wait_load)


def test_pinned_models_are_never_evicted_and_the_error_names_them() -> None:
    with pytest.raises(NoRoom) as caught:
        plan("new", 400 * MiB, 600 * MiB, [r("base", 300, pinned=True), r("x", 100)])
    message = str(caught.value)
    assert "base 300 MiB (pinned)" in message and "x 100 MiB" in message
    assert "MODEL_MEMORY_BUDGET=600 MiB" in message


def test_a_model_larger_than_the_budget_says_so() -> None:
    with pytest.raises(NoRoom, match="it alone needs 700 MiB, more than"):
        plan("huge", 700 * MiB, 600 * MiB, [])


def test_the_model_itself_is_not_counted_twice() -> None:
    assert plan("a", 300 * MiB, 400 * MiB, [r("a", 300, loading=True)]).ready


@pytest.mark.parametrize(("text", "expected"), [
    ("8G", 8 << 30), ("8GiB", 8 << 30), ("512M", 512 << 20), ("512mb", 512 << 20),
    ("1000", 1000), ("50%", 500), ("", 750), ("0", 750), ("1.5G", int(1.5 * (1 << 30))),
])
def test_parse_budget(text: str, expected: int) -> None:
    assert parse_budget(text, 1000) == expected


@pytest.mark.parametrize("text", ["lots", "150%", "-1G", "8X"])
def test_a_bad_budget_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="MODEL_MEMORY_BUDGET"):
        parse_budget(text, 1000)
