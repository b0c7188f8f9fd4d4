"""No interpreter we start imports from a directory someone else chose (issue 18, item 4):
a ``./llm_supervisor/`` planted in the caller's directory (``cd /tmp; llm-supervisord start``)
or in a unit's working directory is never imported — neither by the re-executed daemon nor by
a unit's ``${PYTHON} -c``/``-m`` program or its ``Check=exec:`` — and a unit without
``WorkingDirectory=`` starts in ``/``, not in the daemon's directory. Real daemon, real
programs."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, wait_for

PROBE = "import os, llm_supervisor; print('cwd=' + os.getcwd(), llm_supervisor.__file__, flush=True)"


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a fake ``llm_supervisor`` package that records being imported."""
    where = Path(tempfile.mkdtemp(prefix="llmt-cwd-", dir=tmp_path))
    package = where / "llm_supervisor"
    package.mkdir()
    (package / "__init__.py").write_text(
        f"open({str(where / 'HIJACKED')!r}, 'a').write('imported\\n')\n"
        "raise ImportError('the planted package')\n")
    yield where


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_a_background_start_from_a_planted_directory_imports_nothing_from_it(
        planted: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    units = tmp_path / "units"
    units.mkdir()
    (units / "stack.target").write_text("[Unit]\nDescription=test stack\n")
    env = {**os.environ, "LLM_SUPERVISOR_STATE_DIR": str(state),
           "LLM_SUPERVISOR_UNITS_DIR": str(units), "LLM_SUPERVISOR_RUNTIME": "process",
           "DASHBOARD_PORT": "0"}
    env.pop("LLM_SUPERVISOR_SOCKET", None)
    daemon_cmd = str(Path(sys.executable).parent / "llm-supervisord")
    if not os.access(daemon_cmd, os.X_OK):
        pytest.skip("no llm-supervisord console script next to this interpreter")
    started = subprocess.run([daemon_cmd, "start"], cwd=planted, env=env, capture_output=True,
                             text=True, timeout=90)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert not (planted / "HIJACKED").exists()
    finally:
        subprocess.run([daemon_cmd, "stop"], cwd="/", env=env, capture_output=True, timeout=90)


def test_units_and_their_exec_checks_never_import_from_their_directory(
        planted: Path, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "d")
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit("planted.service", (
        f"[Service]\nExecStart=${{PYTHON}} -c {_quoted(PROBE + '; import time; time.sleep(1000)')}"
        f"\nWorkingDirectory={planted}\n[Health]\n"
        f"Check=exec:${{PYTHON}} -c {_quoted(PROBE)}\nInterval=1\nTimeout=20\n"
        "[Install]\nWantedBy=stack.target\n"))
    daemon.write_unit("nowhere.service", (
        f"[Service]\nExecStart=${{PYTHON}} -c {_quoted(PROBE + '; import time; time.sleep(1000)')}"
        "\n[Install]\nWantedBy=stack.target\n"))
    daemon.start()
    try:
        daemon.wait_state("planted", "running", timeout=60, health="healthy")

        def logged(name: str) -> str:
            text = daemon.client.request("GET", f"/units/{name}/logs",
                                         params={"tail": 20}).text
            return text if "cwd=" in text else ""

        assert f"cwd={planted}" in wait_for(lambda: logged("planted"), 30, "planted's output")
        assert "cwd=/ " in wait_for(lambda: logged("nowhere"), 30, "nowhere's output")
        assert not (planted / "HIJACKED").exists()
    finally:
        daemon.stop()
