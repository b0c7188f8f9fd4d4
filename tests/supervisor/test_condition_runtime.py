"""``ConditionRuntime=[!]process|docker``: one stack.target carries the desktop both as processes
and as containers, and the daemon's runtime (LLM_SUPERVISOR_RUNTIME, or a unit's own Runtime=)
skips the set that does not match, with the reason in the unit's state. Real daemons, real units;
no Docker engine is needed: units whose condition is unmet never reach a runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_supervisor.units.builder import build_unit
from llm_supervisor.units.ini import UnitFileError, parse_unit_text
from tests.daemon_harness import Daemon

SLEEPER = "[Service]\nExecStart=/bin/sleep 60\n[Install]\nWantedBy=stack.target\n"
# Never started (its condition is unmet first): the image does not need to exist.
CONTAINER = ("[Service]\n[Container]\nImage=llm-supervisord-test/never-pulled:1\n"
             "[Install]\nWantedBy=stack.target\n")


def build_error(text: str) -> UnitFileError:
    with pytest.raises(UnitFileError) as info:
        build_unit(parse_unit_text(text, Path("/units/demo.service")), {})
    return info.value


def unit(condition: str, body: str = SLEEPER, extra: str = "") -> str:
    return f"[Unit]\nConditionRuntime={condition}\n{extra}{body}"


def test_process_mode_skips_the_docker_units_with_the_reason(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)  # LLM_SUPERVISOR_RUNTIME=process
    daemon.write_unit("stack.target", "[Unit]\n")
    daemon.write_unit("desktop.service", unit("process"))
    daemon.write_unit("not-docker.service", unit("!docker"))
    daemon.write_unit("desktop-container.service", unit("docker", CONTAINER))
    daemon.write_unit("viewer.service", unit("process", extra="Requires=desktop-container.service\n"
                                             "After=desktop-container.service\n"))
    # Runtime= of its own wins over the daemon's default: this one counts as docker (and is
    # skipped by !docker before any engine is asked).
    daemon.write_unit("forced.service", "[Unit]\nConditionRuntime=!docker\n[Service]\n"
                      "Runtime=docker\n[Container]\nImage=llm-supervisord-test/never-pulled:1\n"
                      "[Install]\nWantedBy=stack.target\n")
    daemon.start()
    try:
        daemon.wait_state("desktop", "running")
        daemon.wait_state("not-docker", "running")
        skipped = daemon.wait_state("desktop-container", "skipped")
        assert skipped["reason"].startswith("condition unmet: the runtime is process "
                                            "(ConditionRuntime=docker"), skipped
        forced = daemon.wait_state("forced", "skipped")
        assert "the runtime is docker (ConditionRuntime=!docker" in forced["reason"], forced
        viewer = daemon.wait_state("viewer", "skipped")  # a required unit was skipped
        assert "desktop-container" in viewer["reason"], viewer
    finally:
        daemon.stop()


def test_docker_mode_skips_the_process_units_but_not_a_forced_process_unit(tmp_path: Path) -> None:
    # No unit here needs an engine: the default-runtime one is skipped, the forced one is a process.
    daemon = Daemon(tmp_path, {"LLM_SUPERVISOR_RUNTIME": "docker"})
    daemon.write_unit("stack.target", "[Unit]\n")
    daemon.write_unit("xvfb-like.service", unit("process"))
    daemon.write_unit("forced.service", "[Unit]\nConditionRuntime=process\n[Service]\n"
                      "Runtime=process\nExecStart=/bin/sleep 60\n[Install]\nWantedBy=stack.target\n")
    daemon.start()
    try:
        skipped = daemon.wait_state("xvfb-like", "skipped")
        assert skipped["reason"].startswith("condition unmet: the runtime is docker "
                                            "(ConditionRuntime=process"), skipped
        daemon.wait_state("forced", "running")
    finally:
        daemon.stop()


@pytest.mark.parametrize("value", ["podman", "!!docker", "process docker", "Docker"])
def test_bad_values_name_file_line_and_key(value: str) -> None:
    error = build_error(f"[Unit]\nDescription=x\nConditionRuntime={value}\n[Service]\n"
                        "ExecStart=/bin/true\n")
    assert str(error).startswith("/units/demo.service:3:"), error
    assert "ConditionRuntime" in str(error.key) and "docker" in error.message


def test_conditions_parse_with_the_runtime_one_checked_first() -> None:
    text = ("[Unit]\nConditionExecutable=Xvfb\nConditionRuntime=!docker\n"
            "[Service]\nExecStart=/bin/true\n")
    parsed = build_unit(parse_unit_text(text, Path("/units/demo.service")), {})
    assert [(c.kind, c.value, c.negate) for c in parsed.conditions] == [
        ("runtime", "docker", True), ("executable", "Xvfb", False)]
