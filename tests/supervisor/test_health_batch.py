"""Healthy units' ``tcp://`` checks run batched (supervisor/health_batch.py): a real program
listening on a real port, a real Manager. While the port accepts, the checks pass from the
kernel's listening table and the program sees no connection; when the program stops listening
(but keeps running), the unit's watch wakes, connects for real, counts the failures and restarts
it as a failed check always did."""

from __future__ import annotations

import sys
from pathlib import Path

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.supervisor.manager import Manager
from tests.ports import free_port
from tests.supervisor.manager_harness import run_manager, service, until

# Listens, reports every connection it accepts, closes the listening socket when
# /STOP_FILE appears and keeps running (so only its health check can tell).
PROGRAM = """
import os, select, socket, sys, time
port, stop_file = int(sys.argv[1]), sys.argv[2]
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port)); server.listen(16)
print("listening", flush=True)
while not os.path.exists(stop_file):
    if select.select([server], [], [], 0.05)[0]:
        server.accept()[0].close(); print("connection", flush=True)
server.close(); print("stopped listening", flush=True)
time.sleep(300)
"""


def _connections(lines: list[str]) -> int:
    return sum(line.endswith("connection") for line in lines)


class CountChecks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    @hookimpl
    def unit_health_checked(self, unit: object, ok: bool, latency_s: float) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def test_passing_checks_open_no_connection_and_a_closed_port_still_fails_the_unit(
        tmp_path: Path) -> None:
    program = tmp_path / "listener.py"
    program.write_text(PROGRAM)
    stop_file = tmp_path / "stop"
    port = free_port()
    unit = service(f"{sys.executable} {program} {port} {stop_file}",
                   extra="Restart=on-failure\nStartLimitBurst=50") + (
        f"[Health]\nCheck=tcp://127.0.0.1:{port}\nInterval=1\nTimeout=1\nRetries=2\n")
    counter = CountChecks()

    async def scenario(manager: Manager) -> None:
        await manager.start_target("stack.target")
        runner = manager.runner("listener")
        await until(lambda: runner.health == "healthy", "healthy")
        first_pid = runner.pid
        passed_then = counter.passed
        await until(lambda: counter.passed >= passed_then + 3, "three more passing checks")
        # The checks that made it healthy may have connected; the batched ones did not.
        connections_so_far = _connections(runner.log.last(200))
        await until(lambda: counter.passed >= passed_then + 5, "two more passing checks")
        assert _connections(runner.log.last(200)) == connections_so_far, runner.log.last(200)
        stop_file.touch()
        await until(lambda: runner.restarts >= 1, "a restart after the port closed", timeout=30)
        assert counter.failed >= 2
        assert "unhealthy" in runner.reason or runner.pid != first_pid

    run_manager(tmp_path, {"listener.service": unit}, [counter], scenario)
