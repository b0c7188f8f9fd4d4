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

Trust: whoever can write the model directory (the model-service container) can write the
manifest, and the supervisor's repair acts on it as root. So :func:`read_manifest` accepts only
plain relative names (no ``..``, ``.``, absolute paths, backslashes, NUL or hidden components),
64-hex-digit SHA-256 values and non-negative sizes, and rejects the whole manifest otherwise; and
nothing here follows a symbolic link inside the model directory: a symlinked file or directory
is reported as ``corrupt`` (to be replaced, never written through).

This module imports only the standard library: repair tooling can use it without pulling in
torch, transformers or Sanic.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from llm_supervisor.core.fsutil import atomic_write_text

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
    """The manifest file exists but cannot be read, parsed or trusted.

    ``kind`` is ``"unreadable"`` (permission or I/O error) or ``"corrupt"`` (anything else).
    """

    def __init__(self, message: str, kind: ProblemKind = "corrupt") -> None:
        super().__init__(message)
        self.kind: ProblemKind = kind


_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a SHA-256 digest as the manifest records it: 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a manifest path, or None when it is a plain relative POSIX path
    that stays inside the model directory (checked lexically; symlinks are checked on disk)."""
    if not isinstance(name, str) or not name:
        return "is not a non-empty string"
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash (paths are POSIX-style)"
    if name.startswith("/"):
        return "is an absolute path"
    parts = name.split("/")
    for bad, why in (("..", "has a '..' component"), (".", "has a '.' component"),
                     ("", "has an empty component")):
        if bad in parts:
            return why
    if any(part.startswith(".") for part in parts):
        return "has a hidden component (never listed in a manifest)"
    if name == MANIFEST_NAME:
        return "is the manifest itself"
    return None


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = False) -> int:
    """A read-only descriptor of the regular file ``path``.

    By default the last component is not followed (``O_NOFOLLOW``: a symlink fails with
    ``ELOOP``), and a FIFO or device never blocks or is read: anything but a regular file raises
    ``OSError``. The caller closes the descriptor.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sha256_file(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> str:
    """Hex SHA-256 digest of a regular file, read in 1 MiB chunks. With
    ``follow_symlinks=False`` a symlink is an error (``ELOOP``) instead of being read through."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, follow_symlinks=follow_symlinks), "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def symlink_on_path(root: str | os.PathLike[str], rel: str) -> str | None:
    """What stands in the way of reaching ``rel`` under ``root`` without following a link:
    ``"sub is a symbolic link"``, ``"sub is not a directory"``, ``"is a symbolic link"`` (the
    file itself), or None. A missing component is not reported here (the file is missing)."""
    base = Path(root)
    parts = rel.split("/")
    for index in range(len(parts)):
        here = "/".join(parts[: index + 1])
        try:
            st = os.lstat(base / here)
        except FileNotFoundError:
            return None
        except OSError:
            return None  # reported as unreadable by whoever looks at the file
        last = index == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            return "is a symbolic link" if last else f"{here} is a symbolic link"
        if not last and not stat.S_ISDIR(st.st_mode):
            return f"{here} is not a directory"
    return None


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
    """Compute the manifest of ``model_dir`` (hashes every file) without writing it.

    Raises :class:`ManifestError` for a symbolic link or another non-regular file: a manifest
    vouches for regular files only."""
    root = Path(model_dir)
    files = {}
    for rel in iter_model_files(root):
        st = os.lstat(root / rel)
        if not stat.S_ISREG(st.st_mode):
            raise ManifestError(f"{root / rel} is not a regular file (a symbolic link?): a "
                                f"manifest vouches for regular files only; replace it by a copy")
        files[rel] = {"size": st.st_size, "sha256": sha256_file(root / rel, follow_symlinks=False)}
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": dict(source) if isinstance(source, Mapping) else {"kind": str(source)},
        "files": files,
    }


def write_manifest(model_dir: str | os.PathLike[str], source: Mapping[str, Any] | str) -> Path:
    """Hash every file of ``model_dir`` and write the manifest there atomically.

    ``source`` records where the files came from; :mod:`llm_supervisor.model_server.sources.choice`
    uses ``{"kind": "hub", "repo_id", "revision", "endpoint"}`` or
    ``{"kind": "gguf", "package", "file", "repo_id", "dtype"}``. A plain string is stored as
    ``{"kind": string}``. Returns the manifest's path.
    """
    root = Path(model_dir)
    data = build_manifest(root, source)
    atomic_write_text(root / MANIFEST_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return root / MANIFEST_NAME


def read_manifest(model_dir: str | os.PathLike[str]) -> dict | None:
    """The parsed and validated manifest of ``model_dir``, or ``None`` if there is none.

    Raises :class:`ManifestError` when the file exists but is unreadable, malformed, a symbolic
    link, or names a file or digest that cannot be trusted (see :func:`name_problem` and
    :func:`is_sha256`). A manifest is used whole or not at all.
    """
    path = Path(model_dir) / MANIFEST_NAME
    try:
        with os.fdopen(open_regular(path), "rb") as fh:
            raw = fh.read().decode("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):
            raise ManifestError(f"{path} is not a regular file (a symbolic link?); delete it, "
                                f"a manifest is never followed") from exc
        raise ManifestError(f"cannot read {path}: {exc}", "unreadable") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8: {exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"invalid JSON in {path}: {exc}") from exc
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise ManifestError(f"{path} has no valid 'files' mapping")
    for name, entry in files.items():
        why = _entry_problem(name, entry)
        if why is not None:
            raise ManifestError(f"{path}: entry {str(name)[:200]!r} {why}; the manifest is not "
                                f"used (write a new one from a known-good copy, or delete it)")
    source = data.get("source")
    if source is not None and not isinstance(source, dict):
        raise ManifestError(f"{path}: 'source' is not an object")
    return data


def _entry_problem(name: object, entry: object) -> str | None:
    why = name_problem(name)
    if why is not None:
        return why
    if not isinstance(entry, dict):
        return "is not an object"
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "has no valid size (a non-negative integer)"
    if not is_sha256(entry.get("sha256")):
        return "has no valid sha256 (64 lowercase hex digits)"
    return None


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
        return [Problem(MANIFEST_NAME, exc.kind, str(exc))]
    if manifest is None:
        return [Problem(MANIFEST_NAME, "missing", "no manifest: the files cannot be verified")]

    problems: list[Problem] = []
    for rel, entry in sorted(manifest["files"].items()):
        problems.extend(_check_file(root, rel, entry, check_hashes))
    if include_extra:
        listed = set(manifest["files"])
        problems.extend(
            Problem(rel, "extra", "not listed in the manifest")
            for rel in iter_model_files(root)
            if rel not in listed
        )
    return problems


def _check_file(root: Path, rel: str, entry: Mapping[str, Any], check_hashes: bool
                ) -> list[Problem]:
    expected_size: int = entry["size"]
    path = root / rel
    blocked = symlink_on_path(root, rel)
    if blocked is not None:
        return [Problem(rel, "corrupt", f"{blocked}: it is replaced, never followed")]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return [Problem(rel, "missing", "file does not exist")]
    except OSError as exc:
        return [Problem(rel, "unreadable", f"{type(exc).__name__}: {exc}")]
    if not stat.S_ISREG(st.st_mode):
        return [Problem(rel, "corrupt", "not a regular file")]
    if not os.access(path, os.R_OK):
        return [Problem(rel, "unreadable", "permission denied")]
    size = st.st_size
    if size < expected_size:
        return [Problem(rel, "truncated", f"size {size} < expected {expected_size}")]
    if size > expected_size:
        return [Problem(rel, "corrupt", f"size {size} > expected {expected_size}")]
    if check_hashes:
        try:
            digest = sha256_file(path, follow_symlinks=False)
        except OSError as exc:
            return [Problem(rel, "unreadable", f"{type(exc).__name__}: {exc}")]
        if digest != entry["sha256"]:
            return [Problem(rel, "corrupt", f"sha256 {digest} != expected {entry['sha256']}")]
    return []
