"""``llm-supervisorctl`` builds only the parser of the subcommand it runs (cli/parsing.py): the
result must be the one the full parser gives, for every verb, and help and errors must still
list every subcommand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llm_supervisor.cli import ctl
from llm_supervisor.cli.parsing import subcommand_in

COMMAND_LINES = [
    ["status"], ["status", "model-service", "--json"], ["--state-dir", "/tmp/x", "status"],
    ["--socket=/tmp/s", "start", "web"], ["stop", "web"], ["restart", "--rolling", "model-service"],
    ["repair", "--verify-only", "model-service"], ["logs", "-f", "-n", "5", "web"],
    ["logs", "--all"], ["verify", "a.service", "b.service"], ["monitor", "--summary"],
    ["reload"], ["reset"], ["shutdown", "--purge", "--yes"], ["plugins"], ["events"],
    ["reopen-logs"], ["errors"], ["doctor", "--units-dir", "/tmp/u"], ["novnc", "--json"],
    ["export", "kubernetes", "-o", "/tmp/out"], ["models", "load", "smollm2-q8"],
    ["images", "build", "-q"],
    # an option's value that is also a verb: the verb is the word after it
    ["--state-dir", "logs", "status"],
]


def full_parse(argv: list[str]) -> object:
    parser, _ = ctl._parser()
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_only_the_verbs_parser_gives_what_the_full_parser_gives(argv: list[str]) -> None:
    assert vars(ctl.parse(argv)) == vars(full_parse(argv))


def test_every_verb_of_the_full_parser_is_built_alone() -> None:
    _, every = ctl._parser()
    for verb in every.built:
        _, alone = ctl._parser(verb)
        assert alone.built == [verb]
    assert {word for argv in COMMAND_LINES for word in argv if word in every.built} \
        == set(every.built), "COMMAND_LINES should try every verb"


def test_the_subcommand_is_found_past_options_and_their_values() -> None:
    options = ("--socket", "--state-dir")
    assert subcommand_in(["--state-dir", "logs", "status", "x"], options) == "status"
    assert subcommand_in(["--socket=/s", "logs"], options) == "logs"
    assert subcommand_in(["-h"], options) is None
    assert subcommand_in(["--help", "status"], options) is None  # the top-level help
    assert subcommand_in(["status", "--help"], options) == "status"
    assert subcommand_in([], options) is None
    assert ctl.parse(["--state-dir", "logs", "status"]).state_dir == Path("logs")


def run_ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", *args],
                          capture_output=True, text=True, timeout=60)


def test_help_and_errors_still_list_every_subcommand() -> None:
    _, every = ctl._parser()
    for answer in (run_ctl("--help"), run_ctl("-h", "status"), run_ctl("no-such-verb"), run_ctl()):
        text = answer.stdout + answer.stderr
        assert all(verb in text for verb in every.built), text
    assert run_ctl("no-such-verb").returncode == 2
    assert "invalid choice: 'no-such-verb'" in run_ctl("no-such-verb").stderr
    status_help = run_ctl("status", "--help")
    assert status_help.returncode == 0 and "--json" in status_help.stdout
    assert "usage: llm-supervisorctl status" in status_help.stdout
