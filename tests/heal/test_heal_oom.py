"""Out of memory, for real: a unit that allocates past its ``MemoryMax=`` is killed by the
kernel (a cgroup v1/v2 memory limit, or the RSS watch where no cgroup can be made), the heal
plugin diagnoses it from the kernel's record and restarts it with a smaller context until it
fits; at the floor it fails with one sentence instead of looping at the same size."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from llm_supervisor.runtimes.process import cgroups
from llm_supervisor.supervisor.manager import Manager
from llm_supervisor.units.memory_values import memory_limit
from tests.daemon_harness import free_port
from tests.heal.heal_helpers import hungry_unit
from tests.supervisor.manager_harness import run_manager, until

needs_cgroup = pytest.mark.skipif(cgroups.detect() is None,
                                  reason="no writable memory cgroup here (needs root)")


def test_memory_values_parse_like_systemd() -> None:
    assert memory_limit("512M") == 512 << 20
    assert memory_limit("1.5G") == int(1.5 * (1 << 30))
    assert memory_limit("infinity") is None
    assert 0 < memory_limit("50%") < memory_limit("100%")
    for bad in ("512", "lots", "0%", "101%", "-5M"):
        with pytest.raises(ValueError):
            memory_limit(bad)


@needs_cgroup
def test_oom_restarts_cheaper_until_it_fits(tmp_path: Path) -> None:
    port = free_port()
    # 4096 cells × 24 KiB = 96 MiB > 60 MiB; 2048 cells = 48 MiB (+ Python) fits.
    units = {"hog.service": hungry_unit(port, "60M")}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["hog.service"]
        await until(lambda: str(runner.health) == "healthy", "healthy at a smaller size", 60)
        status = manager.status_of(runner)
        assert status["heal"]["line"] == "healed: OOM → context 4096, 1 slot → context 2048"
        assert status["memory_max"] == 60 << 20
        assert "killed by the kernel's OOM killer" in "\n".join(runner.log.last(200))
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
        assert answer == "context=2048 slots=1"
        # The cgroup is really there, holds the unit and limits it.
        assert cgroups.detect() is not None
        assert runner.pid is not None
        assert cgroups.owner_folder(str(manager.settings.state_dir.resolve())) in \
            Path(f"/proc/{runner.pid}/cgroup").read_text()

    run_manager(tmp_path, units, [], scenario)


@needs_cgroup
def test_oom_at_the_floor_fails_with_one_sentence(tmp_path: Path) -> None:
    port = free_port()
    # Even context 512 (512 × 200 KiB = 100 MiB) does not fit in 40 MiB.
    units = {"hog.service": hungry_unit(port, "40M", context=1024, kib_per_cell=200)}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["hog.service"]
        await until(lambda: str(runner.state) == "failed", "failed at the floor", 60)
        assert "out of memory at the smallest configuration" in runner.reason
        assert "raise MemoryMax=" in runner.reason
        # 1024 → 512 (one step), then the floor: two runs, never a loop at one size.
        assert runner.restarts == 1
        line = manager.status_of(runner)["heal"]["line"]
        assert line == "degraded: OOM → context 1024, 1 slot → context 512 (floor)"

    run_manager(tmp_path, units, [], scenario)


def test_rss_watch_where_no_cgroup_can_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    """Without a writable cgroup (an unprivileged daemon), the process tree's RSS is watched.
    The cgroup lookup is switched off here because this machine has one."""
    monkeypatch.setattr(cgroups, "detect", lambda root=cgroups.CGROUP_ROOT: None)
    port = free_port()
    # 96 MiB at 4096 > 80 MiB; 48 MiB (+ the interpreter) at 2048 fits.
    units = {"hog.service": hungry_unit(port, "80M")}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["hog.service"]
        # The watch polls, so the first run may answer for a moment before it is killed.
        await until(lambda: str(runner.health) == "healthy" and
                    (manager.status_of(runner).get("heal") or {}).get("state") == "healed",
                    "healthy at a smaller size", 60)
        text = "\n".join(runner.log.last(200))
        assert "enforced by RSS watch" in text
        assert "killed by the RSS watch" in text
        assert manager.status_of(runner)["heal"]["overrides"]["LLAMA_N_CTX"] == "2048"

    run_manager(tmp_path, units, [], scenario)


@needs_cgroup
def test_plain_unit_out_of_memory_gives_up_after_three(tmp_path: Path) -> None:
    """A unit with no cheaper configuration: restarted by its policy, failed with a sentence
    after three OOMs in a row without a stable run."""
    program = "import time; b = bytearray(200 << 20); time.sleep(30)"
    units = {"leak.service": (f"[Service]\nExecStart={sys.executable} -c '{program}'\n"
                              "MemoryMax=30M\nRestartSec=0.05\n[Install]\nWantedBy=stack.target\n")}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["leak.service"]
        await until(lambda: str(runner.state) == "failed", "failed", 60)
        assert "ran out of memory 3 times in a row under MemoryMax=30M" in runner.reason
        assert runner.restarts == 2

    run_manager(tmp_path, units, [], scenario)
