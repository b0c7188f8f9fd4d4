"""What the long-running daemon and the one-shot CLI import (issue 22): the daemon keeps every
module it imports for its whole life, and ``llm-supervisorctl status`` pays for each one on
every call. Read from the real processes' ``-X importtime`` logs (PYTHONPROFILEIMPORTTIME), not
from a list in the code; the times themselves are measured in bench/bench_supervisor.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import Daemon, free_port, sleeper_daemon

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.M)
# lean_imports.UNUSED_EXTRAS: pure-Python packages, seen in the import log...
PYTHON_EXTRAS = {"rich", "pygments", "click"}
# ...and C extensions, seen in the daemon's memory map
EXTENSION_EXTRAS = ("/greenlet/", "/uvloop/", "/ujson.")


def imported(log: str) -> set[str]:
    return set(IMPORT_LINE.findall(log))


def test_the_daemon_imports_structlog_and_httpx_without_their_unused_extras(tmp_path: Path) -> None:
    port = free_port()
    daemon = Daemon(tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1", "DASHBOARD_PORT": "0"})
    daemon.write_unit("stack.target", "[Unit]\n")
    # an HTTP check: the prober imports httpx when the first one runs
    daemon.write_unit("web.service", f"""[Service]
ExecStart={sys.executable} {Path(__file__).parents[1] / 'programs' / 'tiny_http.py'} {port}
[Health]
Check=http://127.0.0.1:{port}/
Interval=1
[Install]
WantedBy=stack.target
""")
    daemon.start()
    try:
        daemon.wait_state("web", "running", health="healthy")
        assert daemon.proc is not None
        mapped = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    finally:
        daemon.stop()
    assert "_pydantic_core" in mapped  # the map is the daemon's, with its extensions
    assert not [extra for extra in EXTENSION_EXTRAS if extra in mapped]
    names = imported(daemon.log_text())
    packages = {name.split(".")[0] for name in names}
    # (-X importtime prints no line for a module one of whose imports failed, as rich's does
    # inside structlog and httpx: their submodules show that they were imported)
    assert {"structlog", "httpx", "sanic"} <= packages, sorted(packages)
    assert "llm_supervisor.supervisor.health" in names
    # a hidden package's failed import still gets a line of its own, with none of its modules
    loaded_extras = {name for name in names if name.split(".")[0] in PYTHON_EXTRAS and "." in name}
    assert not loaded_extras, sorted(loaded_extras)
    # the daemon logged as usual: structlog without rich still renders events
    assert any(event.get("event") for event in daemon.events())


def test_status_imports_the_socket_client_and_the_table_only(tmp_path: Path) -> None:
    daemon = sleeper_daemon(tmp_path)
    try:
        ctl = Path(sys.executable).parent / "llm-supervisorctl"
        done = subprocess.run([str(ctl), "--socket", str(daemon.socket), "status"],
                              env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                              capture_output=True, text=True, timeout=60)
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sleeper" in done.stdout and "running" in done.stdout
    names = imported(done.stderr)
    assert "llm_supervisor.cli.client" in names and "llm_supervisor.cli.status_rows" in names
    heavy = {"pydantic", "pydantic_settings", "llm_supervisor.config.settings", "rich", "httpx",
             "sanic", "structlog", "psutil", "typing", "dataclasses", "inspect", "shutil"}
    assert not names & heavy, sorted(names & heavy)
