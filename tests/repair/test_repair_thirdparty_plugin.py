"""A real third-party plugin: a distribution built in tmp_path with its own ``llm_supervisor``
entry point, installed with pip into a target directory that the daemon subprocess gets on its
PYTHONPATH. Its hooks are called (lifecycle, diagnose, repair), a ``wrapper=True`` impl of it
wraps the other plugins' answer as pluggy documents, it shows in ``llm-supervisorctl plugins``,
and a hook of it that raises is logged and isolated: the other plugins' hooks still run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.daemon_harness import PROJECT_DIR, Daemon, wait_for

PLUGIN = '''
"""A third-party llm-supervisord plugin used by the tests."""
import json
import os
from pathlib import Path

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.types import Diagnosis, RepairResult

OUT = Path(os.environ["TESTPLUGIN_OUT"])


def _note(**record):
    with OUT.open("a") as fh:
        fh.write(json.dumps(record) + "\\n")


@hookimpl
def unit_started(unit, pid):
    _note(hook="unit_started", unit=unit.name, pid=pid)


@hookimpl
def unit_state_changed(unit, new):
    raise RuntimeError("this plugin is clumsy")  # isolated: logged, daemon goes on


@hookimpl
def diagnose_failure(unit, exit_code, log_tail):
    _note(hook="diagnose_failure", unit=unit.name, exit_code=exit_code, tail=log_tail[-3:])
    if exit_code == 3 and any("missing marker" in line for line in log_tail):
        return Diagnosis("testplugin_marker", "the marker file is missing", "testplugin")
    return None


@hookimpl(wrapper=True, specname="diagnose_failure")
def wrap_diagnose(unit):
    diagnosis = yield
    _note(hook="wrap_diagnose", unit=unit.name, kind=diagnosis.kind if diagnosis else None)
    return diagnosis


@hookimpl
def repair_unit(unit, diagnosis, progress):
    if diagnosis.kind != "testplugin_marker":
        return None
    progress(0.5, "writing the marker")
    Path(unit.environment["MARKER"]).write_text("fixed")
    _note(hook="repair_unit", unit=unit.name, kind=diagnosis.kind)
    return RepairResult(True, "marker written")
'''

PROGRAM = """
import os, sys, time
if not os.path.exists(os.environ["MARKER"]):
    print("missing marker", flush=True)
    sys.exit(3)
print("marker present: serving", flush=True)
time.sleep(300)
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build and pip-install the distribution into its own site directory."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    src.mkdir()
    (src / "llm_supervisor_testplugin.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "llm-supervisor-testplugin"
        version = "0.3.1"

        [project.entry-points.llm_supervisor]
        testplugin = "llm_supervisor_testplugin"

        [tool.setuptools]
        py-modules = ["llm_supervisor_testplugin"]
        """))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
                   check=True, capture_output=True, timeout=300)
    assert list(site.glob("llm_supervisor_testplugin-0.3.1.dist-info"))
    return site


def test_third_party_plugin_hooks_are_called(plugin_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    marker = tmp_path / "marker"
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    daemon = Daemon(tmp_path / "d", env={
        "TESTPLUGIN_OUT": str(out),
        "PYTHONPATH": f"{plugin_site}:{PROJECT_DIR / 'src'}",
    })
    daemon.write_unit("stack.target", "[Unit]\nDescription=test stack\n")
    daemon.write_unit("needs-marker.service", f"""[Service]
ExecStart={sys.executable} {program}
Environment=MARKER={marker}
Restart=on-failure
RestartSec=0.2
[Install]
WantedBy=stack.target
""")
    daemon.start()
    try:
        # No health check: "running" as soon as spawned, so wait for the restart after repair.
        unit = wait_for(lambda: (u := daemon.unit("needs-marker"))["restarts"] >= 1
                        and u["state"] == "running" and u, 30, "restart after the repair")
        assert marker.read_text() == "fixed"

        def calls() -> list[dict]:
            return [json.loads(line) for line in out.read_text().splitlines()]

        wait_for(lambda: len([c for c in calls() if c["hook"] == "unit_started"]) >= 2, 10,
                 "second start")
        hooks = [c["hook"] for c in calls()]
        assert hooks[:5] == ["unit_started", "diagnose_failure", "wrap_diagnose", "repair_unit",
                             "unit_started"]
        diagnose = calls()[1]
        assert diagnose["exit_code"] == 3 and "missing marker" in diagnose["tail"]
        assert calls()[2]["kind"] == "testplugin_marker"  # the wrapper saw the answer
        assert unit["restarts"] == 1 and unit["pid"] == calls()[4]["pid"]

        (listed,) = [p for p in daemon.client.get("/plugins") if p["name"] == "testplugin"]
        assert listed["builtin"] is False
        assert listed["distribution"] == "llm-supervisor-testplugin 0.3.1"
        assert listed["hooks"] == ["diagnose_failure", "repair_unit", "unit_started",
                                   "unit_state_changed"]
        cli = subprocess.run([sys.executable, "-m", "llm_supervisor.cli.ctl", "--socket",
                              str(daemon.socket), "plugins"], capture_output=True, text=True,
                             env={**daemon.env, "COLUMNS": "200"}, timeout=60)
        assert "testplugin" in cli.stdout and "llm-supervisor-testplugin 0.3.1" in cli.stdout
        assert "model_repair" in cli.stdout  # the built-in shows beside it

        # The raising hook was isolated: logged each time, the built-in plugins' impls of the
        # same hook still ran (event_log's unit_state_changed lines), and the daemon is fine.
        errors = [e for e in daemon.events() if e.get("event") == "plugin_error"]
        assert errors and all(e["plugin"] == "testplugin" for e in errors)
        assert {e["hook"] for e in errors} == {"unit_state_changed"}
        logged = [e for e in daemon.events() if e.get("event") == "unit_state_changed"]
        assert len(logged) >= len(errors) >= 4
        assert daemon.client.get("/ping")
    finally:
        daemon.stop()
