"""A full disk, for real: a small tmpfs holds the model directory, leftovers of ours (a staging
directory of an interrupted fetch) fill it, and a unit that must write at start dies with
ENOSPC. The heal frees only what is ours and rebuildable, reports it, and retries once: the
unit runs, the user's model and foreign files are untouched. With nothing of ours to free, the
unit fails at once with the sentence that says where to free space."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_supervisor.heal import disk
from llm_supervisor.model_server.sources.hub import fetch_from_hub
from llm_supervisor.model_server.sources.types import ModelSourceError
from llm_supervisor.model_server.weights.fetch_lock import download_dir as disk_download
from llm_supervisor.repair.fetch import FileSource, fetch_files
from llm_supervisor.repair.verify import Expected
from llm_supervisor.supervisor.manager import Manager
from tests.daemon_harness import free_port
from tests.heal.heal_helpers import PROJECT
from tests.model_fixtures import FakeHub
from tests.supervisor.manager_harness import run_manager, until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (root only: mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(path: Path, mib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"\1" * (mib << 20))


def _unit(disk_dir: Path, port: int) -> str:
    return f"""[Service]
ExecStart={sys.executable} -m tests.heal.disk_writer
Environment=MODEL_PATH={disk_dir / "model"} DATA_DIR={disk_dir / "data"} WRITE_MB=3 PORT={port}
Environment=PYTHONPATH={PROJECT}
RestartSec=0.05
[Health]
Check=http://127.0.0.1:{port}/
Interval=0.2
StartPeriod=20
[Install]
WantedBy=stack.target
"""


def test_shortfall_says_what_is_missing(small_disk: Path) -> None:
    assert disk.shortfall(small_disk, 1 << 20, "the download") is None
    message = disk.shortfall(small_disk, 100 << 20, "the download of TinyLlama")
    assert message is not None and message.startswith("the download of TinyLlama needs 100.0 MiB")
    assert "free" in message


def test_enospc_frees_our_leftovers_and_retries_once(tmp_path: Path, small_disk: Path) -> None:
    _fill(small_disk / "model" / "model.safetensors", 1)  # the user's model: never touched
    _fill(small_disk / "notes.txt", 1)  # not ours
    _fill(small_disk / ".model.staging-1a2b3c4d" / "model.safetensors", 5)  # ours, rebuildable
    port = free_port()
    units = {"writer.service": _unit(small_disk, port)}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["writer.service"]
        await until(lambda: str(runner.health) == "healthy", "healthy after freeing space", 60)
        heal = manager.status_of(runner)["heal"]
        assert heal["kind"] == "disk_full"
        assert heal["line"].startswith("healed: disk full → freed 5.0 MiB (1 item(s): ")
        assert ".model.staging-1a2b3c4d" in heal["line"]
        assert "No space left on device" in "\n".join(runner.log.last(200))
        assert not (small_disk / ".model.staging-1a2b3c4d").exists()
        assert (small_disk / "model" / "model.safetensors").stat().st_size == 1 << 20
        assert (small_disk / "notes.txt").stat().st_size == 1 << 20
        assert (small_disk / "data" / "out.bin").stat().st_size == 3 << 20
        assert runner.restarts == 1

    run_manager(tmp_path, units, [], scenario)


def test_nothing_of_ours_to_free_fails_with_one_sentence(tmp_path: Path, small_disk: Path
                                                         ) -> None:
    _fill(small_disk / "model" / "model.safetensors", 6)  # the user's, nothing else
    port = free_port()
    units = {"writer.service": _unit(small_disk, port)}

    async def scenario(manager: Manager) -> None:
        await manager.start_target()
        runner = manager.runners["writer.service"]
        await until(lambda: str(runner.state) == "failed", "failed", 60)
        assert "nothing there is ours to free: free space there" in runner.reason
        assert runner.restarts == 0
        assert (small_disk / "model" / "model.safetensors").stat().st_size == 6 << 20

    run_manager(tmp_path, units, [], scenario)


def test_a_download_that_cannot_fit_says_so_before_writing(
        small_disk: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model (~13 MiB) does not fit on the 8 MiB disk: one sentence, nothing written."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dest = small_disk / "model"
    with pytest.raises(ModelSourceError, match=r"downloading test/tiny-llama needs .* MiB at "):
        fetch_from_hub("test/tiny-llama", dest, endpoint=fake_hub.url)
    assert not any(p.is_file() for p in disk_download(dest).rglob("*"))
    assert disk.evidence([str(ModelSourceError("downloading x needs 9 MiB at /m but only 1 "
                                               "MiB is free: free 8 MiB there"))]) is not None


def test_a_repair_that_cannot_fit_says_so_before_fetching(tmp_path: Path, small_disk: Path
                                                          ) -> None:
    """The repair's fetch of a 100 MiB file to the 8 MiB disk: refused with the sentence, no
    source asked, nothing written."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()

    class Unreachable(FileSource):
        name = "must not be asked"

        def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
            raise AssertionError("fetched although it cannot fit")

    report = fetch_files(model_dir, {"model.safetensors": Expected(size=100 << 20)},
                         [Unreachable()], work_base=small_disk / "work")
    assert report.fixed == {}
    assert report.failed["model.safetensors"][0].startswith("the repair's fetch needs 100.0 MiB")
    assert list((small_disk / "work").iterdir()) == []
