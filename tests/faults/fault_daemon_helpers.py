"""Helpers for the daemon fault suite: a small fake model with a hub whose downloads wait at a
gate (a repair that takes as long as the test wants), the units that use them, a real small
tmpfs, and the scan for unit processes.

Imported by test_fault_daemon.py (``from fault_daemon_helpers import ...``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llm_supervisor.model_server.weights.manifest import MANIFEST_NAME, write_manifest
from tests.model_fixtures import FakeHub

HERE = Path(__file__).resolve().parent
MODEL_PROGRAM = HERE / "fault_daemon_model_unit.py"
NOISY_PROGRAM = HERE / "fault_daemon_noisy_unit.py"
REPO_ID = "test/fake-model"
WEIGHTS = "model.safetensors"
WORKDIR_GLOB = ".llm-supervisor-repair-*"


def fake_model(dest: Path) -> Path:
    """A model directory the repair treats like any other: files plus our sha256 manifest."""
    dest.mkdir(parents=True)
    (dest / "config.json").write_text('{"model_type": "fake"}\n')
    (dest / WEIGHTS).write_bytes(os.urandom(1024 * 1024))
    write_manifest(dest, {"kind": "test", "repo_id": REPO_ID})
    return dest


def repair_workdirs(model: Path, state_dir: Path) -> list[Path]:
    """Work directories of repairs: under the state dir (``repair-work/<unit>``) or, in older
    layouts, at the top of the model directory."""
    return sorted([*model.glob(WORKDIR_GLOB), *state_dir.glob(f"repair-work/*/{WORKDIR_GLOB}")])


def truncate_weights(model: Path) -> None:
    with open(model / WEIGHTS, "r+b") as handle:
        handle.truncate((model / WEIGHTS).stat().st_size // 2)


class GatedHub(FakeHub):
    """A :class:`FakeHub` whose file downloads (GET) wait until :attr:`gate` is set."""

    def __init__(self, repos: dict[str, Path]) -> None:
        super().__init__(repos)
        self.gate = threading.Event()
        gate = self.gate
        base = self.server.RequestHandlerClass

        class Gated(base):  # type: ignore[misc, valid-type]
            def _file(self, path: Path, name: str, body: bool) -> None:
                if body:
                    gate.wait(300)
                super()._file(path, name, body)

        self.server.RequestHandlerClass = Gated

    def downloads(self) -> list[str]:
        return [r for r in self.requests if r.startswith("GET ") and "/resolve/" in r]

    def close(self) -> None:
        self.gate.set()
        super().close()


@contextlib.contextmanager
def gated_hub(root: Path, model: Path) -> Iterator[GatedHub]:
    repo = root / "hub-repo"
    repo.mkdir(parents=True)
    for path in model.iterdir():
        if path.is_file() and path.name != MANIFEST_NAME:
            shutil.copy(path, repo / path.name)
    hub = GatedHub({REPO_ID: repo})
    try:
        yield hub
    finally:
        hub.close()


def model_unit_text(port: int, model: Path, hub: FakeHub, hf_home: Path) -> str:
    return f"""[Unit]
Description=fake model service
[Service]
ExecStart={sys.executable} {MODEL_PROGRAM} {port}
Environment=MODEL_PATH={model} MODEL_ID={REPO_ID} HF_ENDPOINT={hub.url} HF_HUB_OFFLINE=0
Environment=HF_HOME={hf_home} MODEL_REPAIR_STORE=off MODEL_REPAIR_HUB_TIMEOUT=120
Restart=on-failure
RestartSec=0.2
RestartMaxDelaySec=1
[Health]
Check=http://127.0.0.1:{port}/
Interval=0.3
Timeout=2
Retries=3
[Install]
WantedBy=stack.target
"""


# huggingface_hub reads its download timeout when the daemon imports it: a download held at the
# gate must not time out after the default 10 s.
DAEMON_ENV = {"HF_HUB_DOWNLOAD_TIMEOUT": "300", "HF_HUB_ETAG_TIMEOUT": "60"}


def noisy_unit_text(port: int) -> str:
    return f"""[Service]
ExecStart={sys.executable} {NOISY_PROGRAM} {port}
RestartSec=0.2
[Health]
Check=http://127.0.0.1:{port}/
Interval=0.5
Timeout=2
Retries=3
[Install]
WantedBy=stack.target
"""


def unit_processes(state_dir: Path) -> dict[int, str]:
    """pid → unit name of every live process started for a daemon using ``state_dir`` (the
    markers every unit program and its children carry in their environment)."""
    owner = str(state_dir.resolve())
    found = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        unit = env.get("LLM_SUPERVISOR_UNIT")
        if unit and owner in (env.get("LLM_SUPERVISOR_OWNER"), env.get("LLM_SUPERVISOR_STATE_DIR")):
            found[proc.pid] = unit
    return found


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (needs root; the test is skipped otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_disk(directory: Path) -> Path:
    """Write ``directory/filler`` until the file system says ENOSPC; returns the filler."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # Small writes may still fit in a partly used page: take the last bytes too.
    with open(filler, "ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 512)
    return filler
