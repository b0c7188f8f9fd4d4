"""Unit files: parsing, validation errors that name file/line/key, templates, ordering, verify."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llm_supervisor.supervisor import graph
from llm_supervisor.supervisor.unit_file import UnitFileError, parse_unit_text
from llm_supervisor.supervisor.unit_loader import load_directory
from llm_supervisor.supervisor.units import build_unit

VARS = {"PYTHON": "/usr/bin/python3", "MODEL_SERVICE_PORT": "5000"}


def build(text: str, name: str = "demo.service"):
    return build_unit(parse_unit_text(text, Path("/units") / name), VARS)


def error_of(text: str, name: str = "demo.service") -> UnitFileError:
    with pytest.raises(UnitFileError) as info:
        build(text, name)
    return info.value


def test_full_service_parses_with_defaults_and_expansion():
    unit = build("""
[Unit]
Description=Demo
After=db.service
After=cache
Requires=db.service
ConditionPathExists=!/nonexistent
[Service]
ExecStartPre=/bin/true
ExecStartPre=/bin/echo "two words"
ExecStart=${PYTHON} -m http.server ${MODEL_SERVICE_PORT}
Environment=A=1 "B=two words"
Environment=C=3
Restart=always
RestartSec=500ms
RestartMaxDelaySec=1min
KillSignal=SIGINT
[Health]
Check=http://127.0.0.1:${MODEL_SERVICE_PORT}/api/health
Retries=5
StartPeriod=2min
[Install]
WantedBy=stack.target
""")
    assert unit.exec_start == ["/usr/bin/python3", "-m", "http.server", "5000"]
    assert unit.exec_start_pre == [["/bin/true"], ["/bin/echo", "two words"]]
    assert unit.after == ["db.service", "cache.service"]
    assert unit.environment == {"A": "1", "B": "two words", "C": "3"}
    assert unit.restart == "always" and unit.restart_sec == 0.5 and unit.restart_max_delay_sec == 60
    assert unit.kill_signal == signal.SIGINT
    assert unit.health.kind == "http" and unit.health.target.endswith(":5000/api/health")
    assert unit.health.retries == 5 and unit.health.start_period == 120
    assert unit.health.interval == 2.0  # documented default
    assert unit.conditions[0].negate and unit.conditions[0].value == "/nonexistent"
    assert unit.wanted_by == ["stack.target"]
    assert unit.timeout_stop_sec == 10.0 and unit.start_limit_burst == 5


def test_missing_exec_start_names_file_line_and_key():
    error = error_of("[Unit]\nDescription=x\n\n[Service]\nRestart=always\n")
    assert error.path == Path("/units/demo.service")
    assert error.line == 4
    assert "ExecStart" in str(error)
    assert str(error).startswith("/units/demo.service:4:")


def test_bad_restart_value_names_line_and_allowed_values():
    error = error_of("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")
    assert error.line == 3
    assert error.key == "[Service] Restart"
    assert "sometimes" in error.message and "on-failure" in error.message


def test_unknown_section_and_unknown_key():
    error = error_of("[Service]\nExecStart=/bin/true\n[Servise]\nX=1\n")
    assert error.line == 3 and "unknown section [Servise]" in error.message
    error = error_of("[Service]\nExecStart=/bin/true\nRestrat=always\n")
    assert error.line == 3 and error.key == "Restrat"


def test_unknown_variable_and_bad_duration_and_bad_check():
    error = error_of("[Service]\nExecStart=${NOPE} run\n")
    assert error.line == 2 and "${NOPE}" in error.message and "PYTHON" in error.message
    error = error_of("[Service]\nExecStart=/bin/true\nRestartSec=soon\n")
    assert error.line == 3 and "time span" in error.message
    error = error_of("[Service]\nExecStart=/bin/true\n[Health]\nCheck=ftp://x\n")
    assert error.line == 4 and "unknown check" in error.message


def test_syntax_errors_and_continuation_lines():
    assert error_of("ExecStart=/bin/true\n").line == 1
    assert error_of("[Service]\nExecStart /bin/true\n").line == 2
    unit = build("[Service]\nExecStart=/bin/echo a \\\n  b\n")
    assert unit.exec_start == ["/bin/echo", "a", "b"]


def test_x_prefixed_sections_and_keys_are_ignored():
    unit = build("[Service]\nExecStart=/bin/true\nX-Note=hi\n[X-Plugin]\nAnything=1\n")
    assert unit.exec_start == ["/bin/true"]


def test_template_instances_and_specifiers(tmp_path: Path):
    (tmp_path / "worker@.service").write_text(
        "[Unit]\nDescription=worker %i\n[Service]\nExecStart=/bin/echo %i %n %p\n")
    (tmp_path / "pool.target").write_text(
        "[Unit]\nWants=worker@1.service worker@2.service\n")
    result = load_directory(tmp_path, VARS)
    assert not result.errors
    one = result.units["worker@1.service"]
    assert one.exec_start == ["/bin/echo", "1", "worker@1.service", "worker"]
    assert one.description == "worker 1"
    assert graph.pulled_in(result.units, "pool.target") == {
        "pool.target", "worker@1.service", "worker@2.service"}


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path):
    (tmp_path / "good.service").write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / "bad.service").write_text("[Service]\nRestart=never\n")
    result = load_directory(tmp_path, VARS)
    assert list(result.units) == ["good.service"]
    assert len(result.errors) == 1 and result.errors[0].path.name == "bad.service"


def test_cycle_is_a_clear_error_and_layers_follow_after(tmp_path: Path):
    for name, after in (("a", "b"), ("b", "c"), ("c", "a"), ("d", "")):
        (tmp_path / f"{name}.service").write_text(
            f"[Unit]\nAfter={after}\n[Service]\nExecStart=/bin/true\n")
    result = load_directory(tmp_path, VARS)
    with pytest.raises(graph.DependencyCycleError) as info:
        graph.start_layers(result.units)
    assert set(info.value.cycle) == {"a.service", "b.service", "c.service"}
    assert "→" in str(info.value)
    del result.units["c.service"]
    assert graph.start_layers(result.units) == [["b.service", "d.service"], ["a.service"]]


def test_verify_command_exit_codes(tmp_path: Path):
    good = tmp_path / "good.service"
    good.write_text("[Service]\nExecStart=/bin/true\n")
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")
    ok = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify",
                             str(good), str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{bad}:3: [Service] Restart:" in failed.stderr


def test_shipped_units_verify_clean():
    project = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify",
                             "--units-dir", str(project / "units")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
