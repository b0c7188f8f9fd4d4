"""Find exactly which files of a model directory are missing, truncated, corrupt or unreadable.

What a file *should* be comes from the manifest written at the last successful download or
conversion (:mod:`llm_supervisor.model_server.weights.manifest`), or, for a directory without one, from
the hub's file metadata (``HfApi.model_info(files_metadata=True)``: size for every file, LFS
SHA-256 for large ones, the git blob id for the rest). Content checks reuse the manifest
module; on top of them every file and directory is checked for readability by mode bits
(:mod:`.perms`), which the manifest check cannot see when the daemon runs as root.

Names come from the manifest (validated by ``read_manifest``) or the hub; a symbolic link in
the model directory, as the file or as a directory on its way, is ``corrupt`` (replaced, never
followed), and no check reads through one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.model_server.weights import manifest as manifest_mod
from llm_supervisor.model_server.weights.manifest import Problem
from llm_supervisor.repair import perms

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Expected:
    """What one file must be. ``git_sha1`` is the git blob id (hub files outside LFS)."""

    size: int | None
    sha256: str | None = None
    git_sha1: str | None = None


@dataclass
class Expectation:
    """Every file the model consists of, and where that knowledge came from."""

    origin: str  # "manifest" | "hub"
    files: dict[str, Expected]
    source: dict[str, Any] = field(default_factory=dict)


class CannotVerify(Exception):
    """Nothing says what the files should be (no manifest, hub unreachable)."""


def from_manifest(model_dir: Path) -> Expectation | None:
    """The manifest's expectation; None without one. Raises ``ManifestError`` if damaged."""
    data = manifest_mod.read_manifest(model_dir)
    if data is None:
        return None
    files = {rel: Expected(entry["size"], entry["sha256"]) for rel, entry in data["files"].items()}
    return Expectation("manifest", files, dict(data.get("source") or {}))


def from_hub(info: Any, wanted: Iterable[str]) -> Expectation:
    """An expectation from a ``ModelInfo`` fetched with ``files_metadata=True``.

    Names and digests are held to the manifest's rules: a name that is not a plain relative
    path raises :class:`CannotVerify`; a digest that is not hex is not used."""
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    files = {}
    for name in wanted:
        why = manifest_mod.name_problem(name)
        if why is not None:
            raise CannotVerify(f"the hub lists a file {str(name)[:200]!r} that {why}")
        sib = siblings[name]
        lfs = getattr(sib, "lfs", None)
        sha256 = getattr(lfs, "sha256", None) if lfs else None
        blob_id = None if lfs else getattr(sib, "blob_id", None)
        size = sib.size if isinstance(sib.size, int) and sib.size >= 0 else None
        files[name] = Expected(size, sha256 if manifest_mod.is_sha256(sha256) else None,
                               blob_id if isinstance(blob_id, str) else None)
    return Expectation("hub", files, {"kind": "hub", "repo_id": info.id, "revision": info.sha})


def git_blob_sha1(path: Path) -> str:
    """Git's blob id of a regular file (a symlink is an error, never read through)."""
    with os.fdopen(manifest_mod.open_regular(path), "rb") as fh:
        digest = hashlib.sha1(f"blob {os.fstat(fh.fileno()).st_size}\0".encode())  # noqa: S324
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, rel: str, expected: Expected, check_hashes: bool = True
               ) -> Problem | None:
    """Compare one file (or a candidate replacement) with what it should be. ``path`` itself is
    never followed: a symbolic link is ``corrupt``."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Problem(rel, "missing", "file does not exist")
    except OSError as exc:
        return Problem(rel, "unreadable", f"{type(exc).__name__}: {exc}")
    if stat.S_ISLNK(st.st_mode):
        return Problem(rel, "corrupt", "is a symbolic link: it is replaced, never followed")
    if not stat.S_ISREG(st.st_mode):
        return Problem(rel, "corrupt", "not a regular file")
    size = st.st_size
    if expected.size is not None and size < expected.size:
        return Problem(rel, "truncated", f"size {size} < expected {expected.size}")
    if expected.size is not None and size > expected.size:
        return Problem(rel, "corrupt", f"size {size} > expected {expected.size}")
    if not check_hashes:
        return None
    try:
        if expected.sha256:
            digest = manifest_mod.sha256_file(path, follow_symlinks=False)
            if digest != expected.sha256:
                return Problem(rel, "corrupt", f"sha256 {digest} != expected {expected.sha256}")
        elif expected.git_sha1:
            digest = git_blob_sha1(path)
            if digest != expected.git_sha1:
                return Problem(rel, "corrupt", f"git blob {digest} != expected {expected.git_sha1}")
    except OSError as exc:
        return Problem(rel, "unreadable", f"{type(exc).__name__}: {exc}")
    return None


def check_model_file(model_dir: Path, rel: str, expected: Expected, check_hashes: bool = True
                     ) -> Problem | None:
    """:func:`check_file` for ``rel`` in the model directory, where a symlinked directory on
    the way is damage too (the file is reached through it, so it is replaced)."""
    blocked = manifest_mod.symlink_on_path(model_dir, rel)
    if blocked is not None:
        return Problem(rel, "corrupt", f"{blocked}: it is replaced, never followed")
    return check_file(model_dir / rel, rel, expected, check_hashes)


def _permission_problems(model_dir: Path, rels: Iterable[str]) -> list[Problem]:
    """Unreadable modes of the model directory, the directories on the way to each file and
    the files. Stops at a symlink (content damage, reported elsewhere, never followed)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    reason = perms.unreadable_reason(model_dir, follow_symlinks=True)  # the configured path
    if reason:
        problems.append(Problem(".", "unreadable", f"directory: {reason}"))
    for rel in rels:
        if manifest_mod.symlink_on_path(model_dir, rel) is not None:
            continue
        parts = rel.split("/")
        for index in range(1, len(parts) + 1):
            here = "/".join(parts[:index])
            if here in seen:
                continue
            seen.add(here)
            reason = perms.unreadable_reason(model_dir / here)
            if reason:
                what = "directory: " if index < len(parts) else ""
                problems.append(Problem(here, "unreadable", what + reason))
    return problems


def verify(model_dir: Path, expectation: Expectation, check_hashes: bool = True) -> list[Problem]:
    """Every problem of ``model_dir`` against ``expectation``, one per path, sorted by path.

    A content problem (missing, truncated, corrupt) wins over an unreadable mode for the same
    file: replacing the file fixes both.
    """
    if not model_dir.is_dir():
        return [Problem(".", "missing", f"model directory {model_dir} does not exist")]
    if expectation.origin == "manifest":
        content = [p for p in manifest_mod.verify_model_dir(model_dir, check_hashes=check_hashes)
                   if p.path in expectation.files]
    else:
        content = [p for rel, exp in sorted(expectation.files.items())
                   if (p := check_model_file(model_dir, rel, exp, check_hashes)) is not None]
    found: dict[str, Problem] = {p.path: p for p in content}
    for problem in _permission_problems(model_dir, sorted(expectation.files)):
        if problem.path not in found:
            found[problem.path] = problem
    return [found[k] for k in sorted(found)]


def quick_problems(model_dir: Path) -> list[str]:
    """Sizes and modes only, against the manifest: cheap enough for the event loop. A directory
    without a (readable) manifest, or no directory at all, yields nothing: that is not damage."""
    try:
        expectation = from_manifest(model_dir)
    except (manifest_mod.ManifestError, OSError):
        return []
    if expectation is None:
        return []
    return [describe(p) for p in verify(model_dir, expectation, check_hashes=False)]


def describe(problem: Problem) -> str:
    return f"{problem.path}: {problem.kind} ({problem.detail})"
