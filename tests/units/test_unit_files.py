"""Unit files: parsing, validation errors that name file/line/key, templates, ordering, verify."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_supervisor.units import graph
from llm_supervisor.units import loader as unit_loader
from llm_supervisor.units.builder import build_unit
from llm_supervisor.units.ini import UnitFileError, parse_unit_text
from llm_supervisor.units.loader import load_directory
from tests.daemon_harness import Daemon, wait_for

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


# ----------------------------------------------------------------------------- issue 9
SERVICE = "[Service]\nExecStart=/bin/true\n"


@pytest.mark.parametrize("check, fragment", [
    ("http://h:x/", "Port could not be cast"),
    ("http://h:99999/", "out of range"),
    ("http://127.0.0.1:0/", "invalid port 0"),
    ("http://:8080/", "no host"),
    ("http://exa mple.com/", "whitespace"),
    ("http://bad_host!/", "invalid host"),
    ("http://[::1/", "invalid URL"),
    ("tcp://h:70000", "1 to 65535"),
    ("tcp://h:0", "1 to 65535"),
    ("tcp://:80", "expected tcp://HOST:PORT"),
    ("tcp://h", "expected tcp://HOST:PORT"),
    ("tcp://::1:80", "in brackets"),
    ("tcp://h:80/path", "1 to 65535"),
    ("exec:", "empty command"),
    ("exec:'unclosed", "No closing quotation"),
])
def test_bad_health_checks_are_refused_when_parsing(check: str, fragment: str):
    error = error_of(f"{SERVICE}[Health]\nCheck={check}\n")
    assert (error.line, error.key) == (4, "[Health] Check")
    assert fragment in error.message
    assert str(error).startswith("/units/demo.service:4: [Health] Check:")


@pytest.mark.parametrize("check, kind, target", [
    ("http://127.0.0.1:5000/api/health", "http", "http://127.0.0.1:5000/api/health"),
    ("https://example.com/", "http", "https://example.com/"),
    ("http://[::1]:8080/x?y=1", "http", "http://[::1]:8080/x?y=1"),
    ("tcp://localhost:65535", "tcp", "localhost:65535"),
    ("tcp://[::1]:22", "tcp", "[::1]:22"),
])
def test_good_health_checks_still_parse(check: str, kind: str, target: str):
    health = build(f"{SERVICE}[Health]\nCheck={check}\n").health
    assert (health.kind, health.target) == (kind, target)


@pytest.mark.parametrize("section, key, value, fragment", [
    ("Container", "Ports", "8080:99999", "container port '99999'"),
    ("Container", "Ports", "70000:80", "host port '70000'"),
    ("Container", "Ports", "0", "container port '0'"),
    ("Container", "Ports", "80/icmp", "cannot parse"),
    ("Container", "CPUs", "nan", "positive number"),
    ("Container", "CPUs", "-1", "positive number"),
    ("Route", "Upstream", "http://127.0.0.1:x", "Port could not be cast"),
    ("Health", "Interval", "0", "below the minimum of 0.1s"),
    ("Health", "Interval", "50ms", "below the minimum"),
    ("Health", "Interval", "infinity", "finite"),
    ("Health", "Timeout", "0", "below the minimum"),
    ("Service", "RestartSec", "9" * 400, "longer than a year"),
    ("Service", "TimeoutStopSec", "9000h", "longer than a year"),
    ("Unit", "Wants", "../../etc/passwd", "invalid unit name"),
    ("Unit", "After", "a" * 300, "longer than 255"),
])
def test_ports_durations_and_names_are_validated_with_line(section: str, key: str, value: str,
                                                           fragment: str):
    extra = "[Health]\nCheck=tcp://127.0.0.1:1\n" if section == "Health" else ""
    extra += "[Route]\nPathPrefix=/\n" if section == "Route" else ""
    text = f"{SERVICE}{extra}[{section}]\n{key}={value}\n"
    error = error_of(text)
    assert error.line == text.count("\n") and error.key == f"[{section}] {key}"
    assert fragment in error.message


def test_probe_minimum_and_valid_ports_are_accepted():
    unit = build(f"{SERVICE}[Health]\nCheck=tcp://127.0.0.1:1\nInterval=100ms\nTimeout=0.1\n"
                 "[Container]\nImage=x\nPorts=127.0.0.1:8080:80 [::1]::53/udp 65535\nCPUs=0.5\n")
    assert unit.health.interval == 0.1 and unit.health.timeout == 0.1
    assert unit.container.ports == ("127.0.0.1:8080:80", "[::1]::53/udp", "65535")


def test_a_huge_value_makes_a_short_error():
    error = error_of(f"{SERVICE}RestartSec={'x' * 100_000}\n")
    assert error.line == 3 and len(str(error)) < 700


# ---- ${NAME} is expanded after the command line is split: one value, one word
TRICKY = {**VARS, "DIR": "/srv/my models", "EVIL": "x; rm -rf / #", "QUOTED": "it's \"q\"",
          "EMPTY": ""}


def build_tricky(text: str):
    return build_unit(parse_unit_text(text, Path("/units/demo.service")), TRICKY)


def test_expanded_values_stay_one_word_in_every_command_key():
    unit = build_tricky(
        "[Service]\n"
        "ExecStartPre=/bin/ls ${DIR}\n"
        "ExecStart=${PYTHON} -m tool --path=${DIR}/sub ${EVIL} ${QUOTED} '${DIR}' \"a b\" ${EMPTY}\n"
        "Environment=MODEL_DIR=${DIR} NOTE=${EVIL}\n"
        "[Health]\nCheck=exec:/bin/test -d ${DIR}\n"
        "[Container]\nImage=x\nVolumes=${DIR}:/models\nCommand=serve ${EVIL}\nBuildArg=A=${DIR}\n")
    assert unit.exec_start_pre == [["/bin/ls", "/srv/my models"]]
    assert unit.exec_start == ["/usr/bin/python3", "-m", "tool", "--path=/srv/my models/sub",
                               "x; rm -rf / #", "it's \"q\"", "/srv/my models", "a b", ""]
    assert unit.environment == {"MODEL_DIR": "/srv/my models", "NOTE": "x; rm -rf / #"}
    # The prober splits the stored target with shlex: it gets these three words back.
    assert shlex.split(unit.health.target) == ["/bin/test", "-d", "/srv/my models"]
    assert unit.container.volumes == ("/srv/my models:/models",)
    assert unit.container.command == ("serve", "x; rm -rf / #")
    assert unit.container.build_args == {"A": "/srv/my models"}


def test_double_dollar_stays_a_literal_dollar():
    unit = build_tricky("[Service]\nExecStart=/bin/echo $$HOME $${DIR} cost$$5\n")
    assert unit.exec_start == ["/bin/echo", "$HOME", "${DIR}", "cost$5"]


def test_unknown_variable_in_a_split_key_still_names_line_and_key():
    with pytest.raises(UnitFileError) as info:
        build_tricky("[Service]\nExecStart=/bin/true\nEnvironment=A=${NOPE}\n")
    error = info.value
    assert error.line == 3 and error.key == "[Service] Environment"
    assert "${NOPE}" in error.message


# ---- files the parser must refuse with a line, never crash on
@pytest.mark.parametrize("data, line, fragment", [
    (b"[Service]\nExecStart=/bin/true\n\xff\xfe\n", 3, "not UTF-8"),
    (b"[Service]\nExecStart=/bin/true\x00 x\n", 2, "control character"),
    (b"[Service]\n\x0cExecStart=/bin/true\x1b[31m\n", 2, "control character"),
    (b"[Unit]\nDescription=a\x0cb\n[Service]\nFoo=1\n", 2, "control character"),
])
def test_binary_and_control_characters_name_their_line(tmp_path: Path, data: bytes, line: int,
                                                       fragment: str):
    (tmp_path / "bin.service").write_bytes(data)
    result = load_directory(tmp_path, VARS)
    (error,) = result.errors
    assert error.line == line and fragment in error.message


def test_byte_order_mark_and_crlf_are_fine(tmp_path: Path):
    (tmp_path / "win.service").write_bytes(b"\xef\xbb\xbf[Service]\r\nExecStart=/bin/true\r\n")
    result = load_directory(tmp_path, VARS)
    assert not result.errors and result.units["win.service"].exec_start == ["/bin/true"]


# ---- templates that would instantiate for ever
def test_template_wanting_itself_with_a_growing_instance_is_an_error(tmp_path: Path):
    (tmp_path / "loop@.service").write_text(
        "[Unit]\nDescription=loop\nWants=loop@%ix.service\n[Service]\nExecStart=/bin/true\n")
    (tmp_path / "stack.target").write_text("[Unit]\nWants=loop@1.service\n")
    started = time.monotonic()
    result = load_directory(tmp_path, VARS)
    assert time.monotonic() - started < 5
    (error,) = result.errors
    assert error.path.name == "loop@.service" and error.line == 3
    assert error.key == "[Unit] Wants" and "changing instance" in error.message
    assert "loop@1.service" not in result.units


def test_fixed_and_own_instances_of_a_template_are_fine(tmp_path: Path):
    (tmp_path / "web@.service").write_text(
        "[Unit]\nAfter=web@1.service web@%i.service\n[Service]\nExecStart=/bin/echo %i\n")
    (tmp_path / "pool.target").write_text("[Unit]\nWants=web@2.service web@3.service\n")
    result = load_directory(tmp_path, VARS)
    assert not result.errors
    assert {"web@1.service", "web@2.service", "web@3.service"} <= set(result.units)


def test_templates_naming_each_other_are_bounded(tmp_path: Path):
    # ping@ wants two pong@ instances and pong@ wants ping@: unbounded, 2^depth instances.
    (tmp_path / "ping@.service").write_text(
        "[Unit]\nWants=pong@%ia.service pong@%ib.service\n[Service]\nExecStart=/bin/true\n")
    (tmp_path / "pong@.service").write_text(
        "[Unit]\nDescription=pong\nWants=ping@%ic.service\n[Service]\nExecStart=/bin/true\n")
    (tmp_path / "stack.target").write_text("[Unit]\nWants=ping@0.service\n")
    started = time.monotonic()
    result = load_directory(tmp_path, VARS)
    assert time.monotonic() - started < 10
    (error,) = result.errors
    assert error.path.name in ("ping@.service", "pong@.service")
    assert error.line == (2 if error.path.name == "ping@.service" else 3)
    assert "never end" in error.message
    assert list(result.units) == ["stack.target"]  # none of the runaway family is kept
    assert not result.templates


def test_template_instances_are_capped_in_number(tmp_path: Path):
    (tmp_path / "web@.service").write_text("[Service]\nExecStart=/bin/echo %i\n")
    count = unit_loader.MAX_INSTANCES + 1
    names = " ".join(f"web@{i}.service" for i in range(count))
    (tmp_path / "pool.target").write_text(f"[Unit]\nDescription=many\nWants={names}\n")
    result = load_directory(tmp_path, VARS)
    (error,) = result.errors
    assert (error.path.name, error.line) == ("pool.target", 3)
    assert f"{unit_loader.MAX_INSTANCES} template instances" in error.message


# ---- long chains: every graph walk is iterative
CHAIN = 1500


def chain_name(i: int) -> str:
    return f"u{i:04d}.target"


def write_chain(directory: Path, length: int = CHAIN, close: bool = False) -> None:
    """u0000 after u0001 after ... u1499: the first name in sorted order heads the whole chain
    (a recursive walk starting there goes ``length`` calls deep)."""
    for i in range(length):
        after = chain_name(i + 1) if i + 1 < length else (chain_name(0) if close else "")
        directory.joinpath(chain_name(i)).write_text(f"[Unit]\nAfter={after}\nWants={after}\n")


def test_a_long_after_chain_orders_and_pulls_in_without_recursion(tmp_path: Path):
    write_chain(tmp_path)
    result = load_directory(tmp_path, VARS)
    assert not result.errors
    started = time.monotonic()
    layers = graph.start_layers(result.units)
    assert layers == [[chain_name(i)] for i in reversed(range(CHAIN))]
    assert len(graph.pulled_in(result.units, chain_name(0))) == CHAIN
    assert time.monotonic() - started < 5


def test_a_long_after_cycle_is_found_without_recursion(tmp_path: Path):
    write_chain(tmp_path, close=True)
    result = load_directory(tmp_path, VARS)
    cycle = graph.find_cycle(graph.ordering_edges(result.units))
    assert cycle is not None and len(cycle) == CHAIN + 1 and cycle[0] == cycle[-1]


def test_verify_handles_a_long_chain(tmp_path: Path):
    write_chain(tmp_path)
    result = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify",
                             "--units-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{CHAIN} unit file(s) checked, 0 problem(s)" in result.stdout


# ---- the same through a real daemon and real processes
SHOW_ARGV = """import json, sys, time
with open(sys.argv[1] + ".tmp", "w") as out:
    json.dump(sys.argv[2:], out)
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def test_a_program_gets_each_expanded_value_as_one_argument(tmp_path: Path):
    root = tmp_path / "a b"  # STATE_DIR itself has a space
    models = root / "my models"
    models.mkdir(parents=True)
    pwned = root / "pwned"
    model_id = f"org/m; touch {pwned} #"
    script = root / "show argv.py"
    script.write_text(SHOW_ARGV)
    check = root / "check.py"
    check.write_text(f"import sys\nsys.exit(0 if sys.argv[1:] == [{model_id!r}] else 1)\n")
    daemon = Daemon(root, env={"MODEL_PATH": str(models), "MODEL_ID": model_id})
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit("show.service", f"""[Service]
ExecStartPre=${{PYTHON}} -c "import sys; sys.exit(len(sys.argv) != 2)" ${{MODEL_PATH}}
ExecStart=${{PYTHON}} "{script}" ${{STATE_DIR}}/argv.json ${{MODEL_PATH}} ${{MODEL_ID}} \\
    $${{MODEL_ID}} "${{MODEL_PATH}}/x y" --id=${{MODEL_ID}}
[Health]
Check=exec:${{PYTHON}} "{check}" ${{MODEL_ID}}
Interval=0.2
[Install]
WantedBy=stack.target
""")
    try:
        daemon.start()
        daemon.wait_state("show", "running", health="healthy")
        argv_file = daemon.state_dir / "argv.json"
        argv = wait_for(lambda: argv_file.exists() and json.loads(argv_file.read_text()), 30,
                        "the program's argv")
        assert argv == [str(models), model_id, "${MODEL_ID}", f"{models}/x y", f"--id={model_id}"]
        assert not pwned.exists()
    finally:
        daemon.stop()


def test_daemon_with_a_long_after_chain_keeps_serving(tmp_path: Path):
    daemon = Daemon(tmp_path, target=chain_name(0))
    write_chain(daemon.units_dir)
    daemon.write_unit("tail.service", f"""[Unit]
After={chain_name(CHAIN - 1)}
[Service]
ExecStart={sys.executable} -c "import time; time.sleep(600)"
[Install]
WantedBy={chain_name(0)}
""")
    try:
        daemon.start(timeout=60)
        daemon.wait_state("tail", "running", timeout=60)
        assert daemon.client.get("/ping") and daemon.proc.poll() is None
    finally:
        daemon.stop()


def test_verify_names_file_and_line_for_cycles_and_missing_requires(tmp_path: Path):
    # a after b (b's Before=), b after c, c after a: the cycle starts at a, found via b's line.
    (tmp_path / "a.service").write_text(f"[Unit]\nDescription=a\n{SERVICE}")
    (tmp_path / "b.service").write_text(f"[Unit]\nAfter=c\nBefore=a\n{SERVICE}")
    (tmp_path / "c.service").write_text(f"[Unit]\nDescription=c\nAfter=a\nRequires=nope\n{SERVICE}")
    result = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify",
                             "--units-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    problems = result.stderr.splitlines()
    assert f"{tmp_path}/b.service:3: [Unit] Before: dependency cycle: a.service → b.service → " \
           "c.service → a.service" in problems
    assert f"{tmp_path}/c.service:4: [Unit] Requires: nope.service: no such unit" in problems
    assert len(problems) == 2


def test_daemon_lists_a_cycle_with_file_and_line(daemon: Daemon):
    daemon.write_unit("a.service", f"[Unit]\nAfter=b\nWants=b\n{SERVICE}[Install]\n"
                                    "WantedBy=stack.target\n")
    daemon.write_unit("b.service", f"[Unit]\nDescription=b\nAfter=a\n{SERVICE}")
    daemon.start()
    daemon.wait_state("a", "failed")
    (error,) = daemon.client.get("/errors")
    assert error["file"] == str(daemon.units_dir / "a.service") and error["line"] == 2
    assert error["key"] == "[Unit] After" and error["message"].startswith("dependency cycle: ")
