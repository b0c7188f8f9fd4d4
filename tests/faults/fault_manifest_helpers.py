"""Helpers for the crafted-manifest fault test: a stand-in model service, a small model with a
manifest, a sentinel tree outside the model directory, and the damage a compromised model-service
container could do.

Run as a script (``python fault_manifest_helpers.py serve``) it is the stand-in model service:
it checks ``MODEL_PATH`` against its manifest exactly as the real server does with
``VERIFY_MODEL`` (``verify_model_dir``), prints the server's ``weights_load_failed`` event and
exits 65 when anything is wrong, else stays up. The real server would need torch and a model
load per restart; what the fault test exercises is the daemon's detect → repair → restart path.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llm_supervisor.model_server.weights.manifest import (
    MANIFEST_NAME,
    verify_model_dir,
    write_manifest,
)

HERE = Path(__file__).resolve()
REPO = "test/crafted"
FOREIGN = 12345  # owner of the sentinel tree (as root): a repair that chowns it is caught
PAYLOAD = b"written by the supervisor\n"


def serve() -> int:
    model = os.environ["MODEL_PATH"]
    problems = verify_model_dir(model, check_hashes=True)
    if problems:
        first = problems[0]
        print(json.dumps({"event": "weights_load_failed", "file": str(Path(model) / first.path),
                          "error_type": first.kind, "error": first.detail,
                          "problems": [p.to_dict() for p in problems]}), flush=True)
        return 65
    print("model ready", flush=True)
    while True:
        time.sleep(3600)


def unit_text(model: Path, store: Path, hf_home: Path) -> str:
    return f"""[Unit]
Description=stand-in model service (crafted manifest fault test)
[Service]
ExecStart=${{PYTHON}} {HERE} serve
Environment=MODEL_PATH={model} HF_HUB_OFFLINE=1 MODEL_REPAIR_STORE={store} HF_HOME={hf_home}
Environment=MODEL_ID={REPO} PYTHONUNBUFFERED=1 MODEL_REPAIR_ATTEMPTS=2
Restart=on-failure
RestartSec=0.3
RestartMaxDelaySec=1
[Install]
WantedBy=stack.target
"""


def build_model(model: Path) -> Path:
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "crafted"}\n')
    (model / "weights.bin").write_bytes(os.urandom(64 * 1024))
    (model / "sub" / "part.bin").write_bytes(os.urandom(4096))
    write_manifest(model, {"kind": "hub", "repo_id": REPO})
    return model


def build_sentinel(sentinel: Path, model: Path) -> Path:
    """Files a repair must never touch, shaped to tempt one that follows links: the model's own
    ``config.json`` bytes with mode 600 (a perms fix would chmod it), a directory without read
    permission, a decoy manifest; all owned by someone else when we are root."""
    (sentinel / "sub").mkdir(parents=True)
    (sentinel / "victim.txt").write_text("do not touch\n")
    (sentinel / "config.json").write_bytes((model / "config.json").read_bytes())
    (sentinel / "sub" / "part.bin").write_bytes(b"not the model's part\n")
    decoy = json.loads((model / MANIFEST_NAME).read_text())
    decoy["files"]["victim.txt"] = {"size": len(PAYLOAD),
                                   "sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    (sentinel / "manifest.json").write_text(json.dumps(decoy))
    for path, mode in ((sentinel / "config.json", 0o600), (sentinel / "victim.txt", 0o600),
                       (sentinel / "sub" / "part.bin", 0o600), (sentinel / "sub", 0o300),
                       (sentinel / "manifest.json", 0o644)):
        path.chmod(mode)
        if os.geteuid() == 0:
            os.chown(path, FOREIGN, FOREIGN)
    return sentinel


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (itself included), by lstat: type, mode, owner, size,
    mtime and ctime (a chmod or chown moves ctime even when undone), and the bytes' digest or
    the link's target. Links are recorded, never followed."""
    found: dict[str, tuple] = {}

    def record(path: Path) -> None:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            body = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        else:
            body = ""
        found[path.relative_to(root).as_posix()] = (
            stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, body)

    record(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            record(Path(dirpath) / name)
    return found


def _edit_manifest(model: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((model / MANIFEST_NAME).read_text())
    edit(data["files"])
    (model / MANIFEST_NAME).write_text(json.dumps(data, indent=2))


def _add_entry(name: str) -> Callable[[dict], None]:
    def edit(files: dict) -> None:
        files[name] = {"size": len(PAYLOAD), "sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    return edit


def absolute_name(model: Path, sentinel: Path) -> None:
    _edit_manifest(model, _add_entry(str(sentinel / "victim.txt")))


def dotdot_name(model: Path, sentinel: Path) -> None:
    _edit_manifest(model, _add_entry(os.path.relpath(sentinel / "victim.txt", model)))


def non_hex_hash(model: Path, sentinel: Path) -> None:
    def edit(files: dict) -> None:
        files["config.json"]["sha256"] = os.path.relpath(sentinel / "victim.txt", model)
    _edit_manifest(model, edit)
    (model / "config.json").unlink()


def symlinked_file(model: Path, sentinel: Path) -> None:
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(sentinel / "config.json")


def symlinked_dir(model: Path, sentinel: Path) -> None:
    (model / "sub" / "part.bin").unlink()
    (model / "sub").rmdir()
    (model / "sub").symlink_to(sentinel / "sub")


def dangling_symlink(model: Path, sentinel: Path) -> None:
    (model / "weights.bin").unlink()
    (model / "weights.bin").symlink_to(sentinel / "new-file.bin")


def symlinked_manifest(model: Path, sentinel: Path) -> None:
    (model / MANIFEST_NAME).unlink()
    (model / MANIFEST_NAME).symlink_to(sentinel / "manifest.json")


def everything_at_once(model: Path, sentinel: Path) -> None:
    """All link tricks together, with a valid manifest: a repair must heal all of them."""
    symlinked_file(model, sentinel)
    symlinked_dir(model, sentinel)
    dangling_symlink(model, sentinel)
    (model / ".cache").symlink_to(sentinel)  # where an .incomplete sweep would look
    (sentinel / "x.incomplete").touch()  # created before the snapshot: must survive


@dataclass(frozen=True)
class Case:
    name: str
    craft: Callable[[Path, Path], None]
    heals: bool
    reason: str = ""  # a failed unit's reason must contain this


CASES = (
    Case("absolute-name", absolute_name, False, "is an absolute path"),
    Case("dotdot-name", dotdot_name, False, "has a '..' component"),
    Case("non-hex-hash", non_hex_hash, False, "has no valid sha256"),
    Case("symlinked-manifest", symlinked_manifest, False, "is not a regular file"),
    Case("symlinked-file", symlinked_file, True),
    Case("symlinked-dir", symlinked_dir, True),
    Case("dangling-symlink", dangling_symlink, True),
    Case("everything-at-once", everything_at_once, True),
)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        sys.exit(serve())
    sys.exit(f"usage: {sys.argv[0]} serve")
