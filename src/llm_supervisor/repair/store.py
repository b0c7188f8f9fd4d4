"""A content-addressed reserve copy of a model's verified files: repairs without any network.

On these machines the hub is usually unreachable, and the only other offline source (the
SmolLM2 GGUF) takes ~20 s to re-convert and cannot reproduce a hub model at all. So after every
healthy start the plugin copies each manifest file whose SHA-256 is not stored yet into
``blobs/<sha256>`` (hashing while copying; a file that does not match its manifest is never
stored), and drops blobs the current manifest no longer names. Costs one copy of the model on
disk; ``MODEL_REPAIR_STORE=off`` disables it, ``MODEL_REPAIR_STORE=DIR`` moves it.

The manifest is written by whoever can write the model directory, so a blob's name is only ever
a validated 64-hex-digit digest (never a path from the manifest), and model files are read
without following symbolic links.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path

from llm_supervisor.model_server.weights import manifest as manifest_mod

_CHUNK = 1 << 20
_OFF = {"0", "OFF", "NO", "FALSE", "NONE"}


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"

    def blob(self, sha256: str) -> Path:
        """Where the blob of ``sha256`` lives; ``ValueError`` unless it is a SHA-256 digest."""
        if not manifest_mod.is_sha256(sha256):
            raise ValueError(f"not a SHA-256 digest: {str(sha256)[:80]!r}")
        path = self.blobs / sha256
        if os.path.dirname(os.path.realpath(path)) != os.path.realpath(self.blobs):
            raise ValueError(f"{path} leads outside the store {self.blobs}")
        return path

    def has(self, sha256: str) -> bool:
        """Whether a blob of ``sha256`` is stored (a regular file, not a link)."""
        try:
            return stat.S_ISREG(os.lstat(self.blob(sha256)).st_mode)
        except (OSError, ValueError):
            return False

    def fill(self, model_dir: Path) -> list[str]:
        """Store every manifest file of ``model_dir`` not stored yet; returns the paths added.
        Blobs no longer named by the manifest are removed once all its files are stored."""
        try:
            data = manifest_mod.read_manifest(model_dir)
        except (manifest_mod.ManifestError, OSError):
            return []
        if data is None:
            return []
        self.blobs.mkdir(parents=True, exist_ok=True)
        added, complete = [], True
        for rel, entry in sorted(data["files"].items()):
            if self.has(entry["sha256"]):
                continue
            if manifest_mod.symlink_on_path(model_dir, rel) is None and self._copy_verified(
                    model_dir / rel, entry["sha256"], entry["size"]):
                added.append(rel)
            else:
                complete = False
        if complete:
            wanted = {entry["sha256"] for entry in data["files"].values()}
            for blob in self.blobs.iterdir():
                if blob.name not in wanted:
                    blob.unlink(missing_ok=True)
        return added

    def _copy_verified(self, src: Path, sha256: str, size: int) -> bool:
        tmp = self.blobs / f".{sha256}.{uuid.uuid4().hex[:8]}.tmp"
        digest = hashlib.sha256()
        try:
            src_fd = manifest_mod.open_regular(src)  # a link is never read through
            with os.fdopen(src_fd, "rb") as fin, open(tmp, "xb") as fout:
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            if digest.hexdigest() != sha256 or tmp.stat().st_size != size:
                tmp.unlink(missing_ok=True)
                return False
            os.chmod(tmp, 0o444)
            os.replace(tmp, self.blob(sha256))
            return True
        except OSError:
            tmp.unlink(missing_ok=True)
            return False


def store_for(env: Mapping[str, str], unit_name: str) -> Store | None:
    """The unit's store, or None when disabled or no place is known."""
    setting = (env.get("MODEL_REPAIR_STORE") or "").strip()
    if setting.upper() in _OFF:
        return None
    if setting:
        return Store(Path(setting))
    state = env.get("STATE_DIR")
    return Store(Path(state) / "repair-store" / unit_name) if state else None
