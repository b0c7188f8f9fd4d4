"""Fault suite: garbage and mutated unit files by the hundred, from a fixed seed.

``llm-supervisorctl verify`` and the daemon never crash or hang on them, every error names file
and line, and a valid unit in the same directory still starts while the control socket answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llm_supervisor.config import Settings
from llm_supervisor.units.checks import cross_unit_problems
from llm_supervisor.units.ini import UnitFileError
from llm_supervisor.units.loader import load_files
from tests.daemon_harness import Daemon, wait_for
from tests.faults.fault_unit_helpers import (
    ERROR_LINE,
    error_lines,
    graph_cases,
    single_file_cases,
    write_cases,
)

SEED = 20261125
IN_PROCESS_CASES = 2000
VERIFY_BATCHES, VERIFY_BATCH_SIZE = 4, 200
DAEMON_CASES = 300
VERIFY_TIMEOUT_S = 60


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "verify", *args],
                          capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S)


def assert_verify_survived(result: subprocess.CompletedProcess[str], files: list[Path]) -> int:
    """No traceback, a summary, every problem located in one of ``files``; returns the count."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert "unit file(s) checked" in result.stdout
    names = {str(path) for path in files}
    problems = 0
    for line, match in error_lines(result.stderr):
        assert match is not None, f"an error without file:line: {line[:300]!r}"
        assert match["file"] in names, line[:300]
        problems += 1
    return problems


def test_every_garbage_file_alone_fails_cleanly_with_a_line(tmp_path: Path):
    variables = Settings().expansion_vars()
    paths = write_cases(tmp_path, single_file_cases(SEED, IN_PROCESS_CASES))
    refused = 0
    for path in paths:
        try:
            result = load_files([path], variables)
            problems = [*result.errors, *cross_unit_problems(result)]
        except Exception as exc:  # the point of the test: say which input, then fail
            raise AssertionError(f"{path.name}: {type(exc).__name__}: {exc}") from exc
        for problem in problems:
            assert isinstance(problem, UnitFileError) and problem.path == path
            assert problem.line, str(problem)[:300]
            assert ERROR_LINE.match(str(problem)), str(problem)[:300]
        refused += bool(result.errors)
    # Most inputs are broken; some mutations leave a valid unit (a shuffled file, say).
    assert IN_PROCESS_CASES * 0.6 < refused < IN_PROCESS_CASES
    print(f"in-process: {len(paths)} inputs, {refused} refused with file:line, 0 crashes")


def test_verify_survives_batches_of_garbage(tmp_path: Path):
    tried = problems = 0
    for batch in range(VERIFY_BATCHES):
        directory = tmp_path / f"batch{batch}"
        paths = write_cases(directory, single_file_cases(SEED + 1 + batch, VERIFY_BATCH_SIZE))
        # Half the batches name the files, half give the directory (both code paths).
        result = verify(*map(str, paths)) if batch % 2 else verify("--units-dir", str(directory))
        problems += assert_verify_survived(result, paths)
        assert result.returncode == 1
        tried += len(paths)
    assert problems > VERIFY_BATCH_SIZE * VERIFY_BATCHES * 0.6
    print(f"verify: {tried} inputs in {VERIFY_BATCHES} runs, {problems} problems located")


def test_verify_ends_on_runaway_templates_chains_and_cycles(tmp_path: Path):
    cases = graph_cases("g")
    paths = write_cases(tmp_path, cases)
    result = verify("--units-dir", str(tmp_path))
    assert_verify_survived(result, paths)
    stderr = result.stderr
    assert f"{tmp_path}/gloop@.service:2: [Unit] Wants: template gloop@.service names itself" \
        in stderr
    assert "never end" in stderr  # ping@/pong@ name each other with growing instances
    for size in (1, 2, 3, 7):
        assert f"{tmp_path}/gcyc{size}x0.service:2: [Unit] After: dependency cycle:" in stderr
    assert "gdeep" not in stderr and "gchain" not in stderr  # long but finite: fine
    print(f"verify: {len(paths)} template/chain/cycle files, {stderr.count(chr(10))} problems")


def test_daemon_loads_garbage_keeps_serving_and_starts_the_valid_unit(tmp_path: Path):
    daemon = Daemon(tmp_path, target="fault.target")
    garbage = single_file_cases(SEED + 100, DAEMON_CASES) + graph_cases("g")
    write_cases(daemon.units_dir, garbage)
    daemon.write_unit("fault.target", "[Unit]\nDescription=the fault suite's target\n")
    daemon.write_unit("good.service", f"""[Service]
ExecStart={sys.executable} -c "import time; time.sleep(600)"
[Install]
WantedBy=fault.target
""")
    try:
        daemon.start(timeout=90)
        good = daemon.wait_state("good", "running", timeout=60)
        assert_errors_located(daemon)

        # A reload onto a fresh batch of garbage: same checks, the valid unit untouched.
        for name, _ in garbage[:DAEMON_CASES]:
            (daemon.units_dir / name).unlink()
        write_cases(daemon.units_dir, single_file_cases(SEED + 200, DAEMON_CASES))
        reloaded = daemon.ctl("reload")
        assert "Traceback" not in reloaded.stderr, reloaded.stderr[-3000:]
        assert daemon.unit("good")["pid"] == good["pid"]
        assert_errors_located(daemon)

        # Asking for units that cannot exist is an answer, not a crash.
        for name in ("gloop@7", "gping@1", "../../etc/passwd", "a" * 300, "x@", "%i",
                     "gdeep0@y", "gchain0000.target"):
            answer = daemon.ctl("start", name)
            assert "Traceback" not in answer.stderr, answer.stderr[-3000:]
        assert daemon.client.get("/ping") and daemon.proc.poll() is None
        status = daemon.ctl("status", "--json")
        assert status.returncode == 0 and any(u["name"] == "good" for u in json.loads(status.stdout))
    finally:
        code = daemon.stop()
    assert code == 0
    assert "Traceback" not in daemon.log_text()
    events = [e for e in daemon.events() if e.get("event") == "unit_file_error"]
    assert len(events) > DAEMON_CASES
    assert all(e.get("file") and e.get("line") for e in events), [
        e for e in events if not (e.get("file") and e.get("line"))][:3]
    print(f"daemon: {2 * DAEMON_CASES} garbage files + {len(garbage) - DAEMON_CASES} template/"
          f"chain/cycle files, {len(events)} errors logged with file:line, 0 crashes")


def assert_errors_located(daemon: Daemon) -> None:
    errors = wait_for(lambda: daemon.client.get("/errors"), 30, "the daemon's error list")
    unlocated = [e for e in errors if not (e["file"] and e["line"])]
    assert not unlocated, unlocated[:3]
