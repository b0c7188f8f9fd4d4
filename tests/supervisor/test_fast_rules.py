"""Fast, in-process tests of the rules the end-to-end tests exercise slowly: restart pacing
(backoff and start limit), time spans, EnvironmentFile= parsing. Milliseconds each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.supervisor.backoff import STABLE_AFTER_S, RestartPacer
from llm_supervisor.units.durations import MAX_SECONDS, parse_duration
from llm_supervisor.units.env_file import read_env_file


# ---------------------------------------------------------------- backoff and start limit
def test_backoff_doubles_up_to_the_cap_and_a_stable_run_resets_it() -> None:
    pacer = RestartPacer(restart_sec=0.5, max_delay_sec=3, burst=0, interval_sec=10)
    delays = []
    for _ in range(6):
        pacer.record_exit(ran_for_s=1)
        delays.append(pacer.next_delay())
    assert delays == [0.5, 1, 2, 3, 3, 3]  # min(RestartSec * 2^(n-1), RestartMaxDelaySec)
    pacer.record_exit(ran_for_s=STABLE_AFTER_S)
    assert pacer.next_delay() == 0.5


def test_backoff_does_not_overflow_after_many_restarts() -> None:
    pacer = RestartPacer(restart_sec=1, max_delay_sec=math.inf, burst=0, interval_sec=10)
    for _ in range(5000):
        pacer.record_exit(ran_for_s=0)
    assert pacer.next_delay() == 2.0**30


def test_start_limit_counts_starts_within_the_interval() -> None:
    pacer = RestartPacer(restart_sec=0.1, max_delay_sec=1, burst=3, interval_sec=10)
    for at in (0.0, 1.0, 2.0):
        assert not pacer.limit_hit(now=at)
        pacer.record_start(now=at)
    assert pacer.limit_hit(now=3.0)  # a 4th start within 10 s
    assert not pacer.limit_hit(now=10.5)  # the first start left the window
    pacer.reset()
    assert not pacer.limit_hit(now=3.0)


def test_start_limit_burst_zero_means_no_limit() -> None:
    pacer = RestartPacer(restart_sec=0.1, max_delay_sec=1, burst=0, interval_sec=10)
    for at in range(100):
        pacer.record_start(now=float(at) / 100)
    assert not pacer.limit_hit(now=1.0)


# ---------------------------------------------------------------- time spans
@pytest.mark.parametrize(("text", "seconds"), [
    ("5", 5), ("500ms", 0.5), ("2min 30s", 150), ("1h", 3600), ("1.5s", 1.5), (" 10 sec ", 10),
    ("250us", 250e-6), ("1hour 1minute", 3660), ("infinity", math.inf), ("INFINITY", math.inf),
    ("0", 0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"), ("5 parsecs", "invalid time span"), ("-1", "invalid time span"),
    ("1e3", "invalid time span"), ("ms", "invalid time span"),
    (f"{int(MAX_SECONDS) + 1}", "longer than a year"), ("9999999h", "longer than a year"),
])
def test_bad_durations_say_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)


# ---------------------------------------------------------------- EnvironmentFile=
def test_env_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("# comment\n; also a comment\n\nA=1\n  B = two words  \nexport C=3\n"
                    "D=\"quoted\"\nE='single'\nF=a=b\nA=later wins\n")
    assert read_env_file(path, optional=False) == {
        "A": "later wins", "B": "two words", "C": "3", "D": "quoted", "E": "single", "F": "a=b"}


def test_env_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("A=1\nnot an assignment\n")
    with pytest.raises(RuntimeError_, match=rf"{path}:2: .*expected NAME=VALUE"):
        read_env_file(path, optional=False)


def test_env_file_missing_or_not_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert read_env_file(missing, optional=True) == {}
    with pytest.raises(RuntimeError_, match="No such file"):
        read_env_file(missing, optional=False)
    latin = tmp_path / "latin1"
    latin.write_bytes(b"NAME=caf\xe9\n")
    with pytest.raises(RuntimeError_, match="not UTF-8"):  # was an internal error of the runner
        read_env_file(latin, optional=False)
