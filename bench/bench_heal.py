"""Time to heal, per failure, next to the same unit's plain start and plain restart, all measured
in this run with the real daemon (process runtime) and real faults.

    .venv/bin/python bench/bench_heal.py [--repeats 3] [--skip-stall]

For each failure a unit is started through the control socket and timed from outside (HTTP)
until it answers:

- ``healthy start``: the unit without the fault (the baseline of its start);
- ``heal``: the same unit with the fault: OOM (MemoryMax= below what context 4096 needs: the
  cgroup kills it, it comes back at context 2048), taken port (another process holds
  MODEL_SERVICE_PORT: moved), full disk (an 8 MiB tmpfs filled with our staging leftovers:
  freed, retried), crashing engine (llama.cpp dies with SIGILL twice: transformers);
- ``plain restart``: SIGKILL of the healthy unit → answering again (what any supervisor does).

The stuck engine is measured on the real model server (tiny transformers model): from the
moment the stuck request starts to answering again (503 to the client, health 503, restart),
next to SIGKILL → answering again of the same server. Medians of ``--repeats`` runs. Needs root
for the cgroup and the tmpfs (those rows are skipped otherwise).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from llm_supervisor.runtimes.process import cgroups  # noqa: E402
from tests.daemon_harness import Daemon, free_port  # noqa: E402  (tests/: reused, not copied)
from tests.heal.heal_helpers import hungry_unit  # noqa: E402

PY = sys.executable
TINY_HTTP = REPO / "tests" / "programs" / "tiny_http.py"
HOLD = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])));"
        " s.listen(); print('held', flush=True); time.sleep(3600)")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_answering(url: str, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if answers(url):
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _not_wanted(text: str) -> str:
    """The unit is started by the bench, not by the target."""
    return text.replace("[Install]\nWantedBy=stack.target\n", "")


class Case:
    """One unit text with and without its fault."""

    def __init__(self, name: str, make: Callable[[Path, int, bool], str],
                 prepare: Callable[[Path, int, bool], Callable[[], None]] | None = None,
                 health_path: str = "/") -> None:
        self.name, self.make, self.prepare, self.health_path = name, make, prepare, health_path

    def run(self, root: Path, fault: bool) -> tuple[float, float | None]:
        """Seconds from `start` to answering, and (without the fault) SIGKILL → answering."""
        port = free_port()
        cleanup = self.prepare(root, port, fault) if self.prepare else (lambda: None)
        daemon = Daemon(root / ("fault" if fault else "plain"))
        daemon.write_unit("stack.target", "[Unit]\nDescription=bench\n")
        daemon.write_unit("u.service", _not_wanted(self.make(root, port, fault)))
        url = f"http://127.0.0.1:{port}{self.health_path}"
        try:
            daemon.start()
            started = time.monotonic()
            daemon.client.post("/units/u/start")
            ready = wait_answering(url) - started
            restart = None
            if not fault:
                daemon.wait_state("u", "running", 60)
                pid = daemon.unit("u")["pid"]
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                while answers(url):
                    time.sleep(0.005)
                restart = wait_answering(url) - killed
            elif not (daemon.unit("u").get("heal") or {}).get("line"):
                raise RuntimeError(f"{self.name}: answered without a heal: {daemon.unit('u')}")
            return ready, restart
        finally:
            daemon.stop()
            cleanup()


def oom_unit(root: Path, port: int, fault: bool) -> str:
    # 96 MiB at context 4096; 48 MiB at 2048. The fault: MemoryMax= below 96 MiB.
    return hungry_unit(port, "60M" if fault else "200M", context=4096 if fault else 2048)


def port_unit(root: Path, port: int, fault: bool) -> str:
    return (f"[Service]\nExecStart={PY} {TINY_HTTP} {port}\nEnvironment=MODEL_SERVICE_PORT={port}"
            f"\nRestartSec=0.1\n[Health]\nCheck=http://127.0.0.1:{port}/\nInterval=0.2\n"
            "StartPeriod=20\n[Install]\nWantedBy=stack.target\n")


def hold_port(root: Path, port: int, fault: bool) -> Callable[[], None]:
    if not fault:
        return lambda: None
    holder = subprocess.Popen([PY, "-c", HOLD, str(port)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

    def release() -> None:
        holder.kill()
        holder.wait()
    return release


class MovedPortCase(Case):
    """The healed unit answers on the port it moved to: poll status for it."""

    def run(self, root: Path, fault: bool) -> tuple[float, float | None]:
        if not fault:
            return super().run(root, fault)
        port = free_port()
        cleanup = hold_port(root, port, True)
        daemon = Daemon(root / "fault")
        daemon.write_unit("stack.target", "[Unit]\nDescription=bench\n")
        daemon.write_unit("u.service", _not_wanted(port_unit(root, port, True)))
        try:
            daemon.start()
            started = time.monotonic()
            daemon.client.post("/units/u/start")
            while True:
                heal = daemon.unit("u").get("heal") or {}
                moved = heal.get("overrides", {}).get("MODEL_SERVICE_PORT")
                if moved and answers(f"http://127.0.0.1:{moved}/"):
                    return time.monotonic() - started, None
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"port heal did not answer: {daemon.unit('u')}")
                time.sleep(0.01)
        finally:
            daemon.stop()
            cleanup()


def disk_unit(root: Path, port: int, fault: bool) -> str:
    disk = root / "disk"
    return (f"[Service]\nExecStart={PY} -m tests.heal.disk_writer\n"
            f"Environment=MODEL_PATH={disk / 'model'} DATA_DIR={disk / 'data'} WRITE_MB=3 "
            f"PORT={port} PYTHONPATH={REPO}\nRestartSec=0.05\n[Health]\n"
            f"Check=http://127.0.0.1:{port}/\nInterval=0.2\nStartPeriod=20\n"
            "[Install]\nWantedBy=stack.target\n")


def small_disk(root: Path, port: int, fault: bool) -> Callable[[], None]:
    disk = root / "disk"
    disk.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    if fault:  # our leftovers fill it: an interrupted download's staging directory
        staging = disk / ".model.staging-bench"
        staging.mkdir()
        (staging / "model.safetensors").write_bytes(b"\1" * (6 << 20))
    return lambda: subprocess.run(["umount", "-l", str(disk)], check=False)


def engine_unit(root: Path, port: int, fault: bool) -> str:
    model = root / "model"
    model.mkdir(exist_ok=True)
    (model / "m.gguf").write_bytes(b"GGUF")
    engine = "llama.cpp" if fault else "transformers"
    return (f"[Service]\nExecStart={PY} -m tests.heal.engine_standin\n"
            f"Environment=MODEL_PATH={model} ENGINE={engine} PORT={port} PYTHONPATH={REPO}\n"
            "RestartSec=0.05\n[Health]\n"
            f"Check=http://127.0.0.1:{port}/\nInterval=0.2\nStartPeriod=20\n"
            "[Install]\nWantedBy=stack.target\n")


def stall_case(root: Path) -> tuple[float, float]:
    """The real model server: a stuck decoding step → answering again, and SIGKILL → again."""
    from tests.heal.test_heal_stall import _unit
    from tests.model_fixtures import _build_cached, _build_tiny

    port = free_port()
    marker = root / "stalled"
    daemon = Daemon(root / "stall")
    daemon.write_unit("stack.target", "[Unit]\nDescription=bench\n")
    text = _unit(_build_cached("tiny-llama", _build_tiny), port, marker).replace("HEAL_TEST_STEP_DELAY=0.05",
                                                         "HEAL_TEST_STEP_DELAY=0")
    daemon.write_unit("u.service", text)
    health = f"http://127.0.0.1:{port}/api/health"
    try:
        daemon.start()
        wait_answering(health, 300)
        started = time.monotonic()
        reply = httpx.post(f"http://127.0.0.1:{port}/api/generate",
                           json={"prompt": "Hello", "max_length": 64}, timeout=60)
        assert reply.status_code == 503, reply.text
        while answers(health):
            time.sleep(0.01)
        healed = wait_answering(health, 300) - started
        pid = daemon.unit("u")["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while answers(health):
            time.sleep(0.005)
        restart = wait_answering(health, 300) - killed
        return healed, restart
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-stall", action="store_true")
    args = parser.parse_args()
    root_ok = os.geteuid() == 0
    cases: list[Case] = []
    if root_ok and cgroups.detect() is not None:
        cases.append(Case("out of memory", oom_unit))
    cases.append(MovedPortCase("taken internal port", port_unit))
    if root_ok:
        cases.append(Case("full disk (ENOSPC)", disk_unit, small_disk))
    cases.append(Case("engine crash at start (SIGILL ×2)", engine_unit))
    print(f"bench_heal: {args.repeats} run(s) each, medians; process runtime; "
          f"python {sys.version.split()[0]}")
    print(f"{'failure':38} {'heal: start→answering':>22} {'healthy start':>14} "
          f"{'plain restart':>14}")
    for case in cases:
        heal, plain, restart = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="bench-heal-") as tmp:
                heal.append(case.run(Path(tmp), True)[0])
            with tempfile.TemporaryDirectory(prefix="bench-heal-") as tmp:
                ready, again = case.run(Path(tmp), False)
                plain.append(ready)
                restart.append(again or 0.0)
        print(f"{case.name:38} {statistics.median(heal):21.2f}s "
              f"{statistics.median(plain):13.2f}s {statistics.median(restart):13.2f}s", flush=True)
    if not args.skip_stall:
        healed, restarts = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="bench-heal-") as tmp:
                h, r = stall_case(Path(tmp))
                healed.append(h)
                restarts.append(r)
        print(f"{'stuck engine (model server, tiny)':38} {statistics.median(healed):21.2f}s "
              f"{'(stuck→answering)':>14} {statistics.median(restarts):13.2f}s", flush=True)


if __name__ == "__main__":
    main()
