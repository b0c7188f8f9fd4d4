"""Model-directory manifest: what files a model consists of, their sizes and SHA-256 digests.

A manifest (``llm-supervisor-manifest.json``) is written into a model directory after every
successful download or conversion. Loading a model silently succeeds when random bytes land
inside tensor data, and hub downloads can report success on a digest mismatch, so the manifest is
the only reliable way to tell an intact model from a damaged one.

File format (JSON)::

    {
      "format": 1,
      "created": "2026-11-25T16:00:00+00:00",
      "source": {"kind": "hub", "repo_id": "...", "revision": "..."},
      "files": {"config.json": {"size": 714, "sha256": "ab12..."}, ...}
    }

Paths are relative, POSIX-style. Paths with a component starting with ``.`` (for example the
hub client's ``.cache/`` bookkeeping) and the manifest itself are not listed.

This module imports only the standard library: repair tooling can use it without pulling in
torch, transformers or Sanic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

MANIFEST_NAME = "llm-supervisor-manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20

ProblemKind = Literal["missing", "truncated", "corrupt", "unreadable", "extra"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model directory.

    ``path`` is relative to the model directory (``"."`` for the directory itself);
    ``kind`` is one of ``missing``, ``truncated`` (shorter than recorded), ``corrupt`` (longer
    than recorded, digest mismatch, or an unparsable manifest), ``unreadable`` (permission or I/O
    error) and ``extra`` (present but not in the manifest, only reported on request).
    """

    path: str
    kind: ProblemKind
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class ManifestError(ValueError):
    """The manifest file exists but cannot be read or parsed."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def iter_model_files(model_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Relative POSIX paths of the files a manifest covers, sorted."""
    root = Path(model_dir)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST_NAME:
                found.append(rel)
    yield from sorted(found)


def build_manifest(model_dir: str | os.PathLike[str], source: Mapping[str, Any] | str) -> dict:
    """Compute the manifest of ``model_dir`` (hashes every file) without writing it."""
    root = Path(model_dir)
    files = {
        rel: {"size": (root / rel).stat().st_size, "sha256": sha256_file(root / rel)}
        for rel in iter_model_files(root)
    }
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": dict(source) if isinstance(source, Mapping) else {"kind": str(source)},
        "files": files,
    }


def write_manifest(model_dir: str | os.PathLike[str], source: Mapping[str, Any] | str) -> Path:
    """Hash every file of ``model_dir`` and write the manifest there atomically.

    ``source`` records where the files came from; :mod:`llm_supervisor.model_server.sources`
    uses ``{"kind": "hub", "repo_id", "revision", "endpoint"}`` or
    ``{"kind": "gguf", "package", "file", "repo_id", "dtype"}``. A plain string is stored as
    ``{"kind": string}``. Returns the manifest's path.
    """
    root = Path(model_dir)
    data = build_manifest(root, source)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, root / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return root / MANIFEST_NAME


def read_manifest(model_dir: str | os.PathLike[str]) -> dict | None:
    """The parsed manifest of ``model_dir``, or ``None`` if there is none.

    Raises :class:`ManifestError` when the file exists but is unreadable or malformed.
    """
    path = Path(model_dir) / MANIFEST_NAME
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"invalid JSON in {path}: {exc}") from exc
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
        for v in files.values()
    ):
        raise ManifestError(f"{path} has no valid 'files' mapping")
    return data


def verify_model_dir(
    model_dir: str | os.PathLike[str], *, check_hashes: bool = True, include_extra: bool = False
) -> list[Problem]:
    """Compare ``model_dir`` with its manifest and list every problem found (empty = intact).

    ``check_hashes=False`` only compares sizes (fast: no file is read). Without a manifest the
    answer is a single ``missing`` problem for the manifest itself, since nothing can be vouched
    for; a damaged manifest is ``corrupt`` or ``unreadable``.
    """
    root = Path(model_dir)
    if not root.is_dir():
        return [Problem(".", "missing", f"model directory {root} does not exist")]
    try:
        manifest = read_manifest(root)
    except ManifestError as exc:
        kind: ProblemKind = "corrupt" if "JSON" in str(exc) or "valid" in str(exc) else "unreadable"
        return [Problem(MANIFEST_NAME, kind, str(exc))]
    if manifest is None:
        return [Problem(MANIFEST_NAME, "missing", "no manifest: the files cannot be verified")]

    problems: list[Problem] = []
    for rel, entry in sorted(manifest["files"].items()):
        problems.extend(_check_file(root / rel, rel, entry, check_hashes))
    if include_extra:
        listed = set(manifest["files"])
        problems.extend(
            Problem(rel, "extra", "not listed in the manifest")
            for rel in iter_model_files(root)
            if rel not in listed
        )
    return problems


def _check_file(path: Path, rel: str, entry: Mapping[str, Any], check_hashes: bool) -> list[Problem]:
    expected_size: int = entry["size"]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [Problem(rel, "missing", "file does not exist")]
    except OSError as exc:
        return [Problem(rel, "unreadable", f"{type(exc).__name__}: {exc}")]
    if not path.is_file():
        return [Problem(rel, "corrupt", "not a regular file")]
    if not os.access(path, os.R_OK):
        return [Problem(rel, "unreadable", "permission denied")]
    if size < expected_size:
        return [Problem(rel, "truncated", f"size {size} < expected {expected_size}")]
    if size > expected_size:
        return [Problem(rel, "corrupt", f"size {size} > expected {expected_size}")]
    if check_hashes:
        try:
            digest = sha256_file(path)
        except OSError as exc:
            return [Problem(rel, "unreadable", f"{type(exc).__name__}: {exc}")]
        if digest != entry["sha256"]:
            return [Problem(rel, "corrupt", f"sha256 {digest} != expected {entry['sha256']}")]
    return []
