"""Re-fetch single model files and put them in place atomically.

Sources, in the order a repair tries them (each candidate is checked against the expected size
and SHA-256 *by us*: ``snapshot_download``/``hf_hub_download`` can report success on a digest
mismatch, huggingface_hub#3643):

1. :class:`HubSource`   ``hf_hub_download`` of just that file, when the hub answers;
2. :class:`CacheSource` the local Hugging Face cache (``try_to_load_from_cache``), offline;
3. :class:`StoreSource` the plugin's reserve copy of the last verified files (:mod:`.store`);
4. :class:`GGUFSource`  the offline SmolLM2 GGUF re-converted (deterministic: the conversion
   reproduces the recorded files bit for bit), only for models that came from it.

Candidates are written into a work directory *inside* the model directory (same file system,
so the final ``os.replace`` is atomic; its name starts with ``.`` so neither the manifest nor the
loader sees it). A file is only ever overwritten by a verified replacement: nothing is deleted
that cannot be replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.repair import perms
from llm_supervisor.repair.store import Store
from llm_supervisor.repair.verify import Expected, check_file

WORKDIR_PREFIX = ".llm-supervisor-repair-"
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
        """A candidate for ``rel`` somewhere under ``workdir``; raises :class:`SourceError`."""


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
    repo_id: str
    revisions: Sequence[str | None]
    cache_dir: Path
    name: str = "local cache"

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        from huggingface_hub import try_to_load_from_cache

        for revision in self.revisions:
            try:
                found = try_to_load_from_cache(self.repo_id, rel, cache_dir=self.cache_dir,
                                               revision=revision)
            except Exception:  # a malformed revision or cache: just not found here
                found = None
            if isinstance(found, str) and os.path.isfile(found):
                dest = workdir / "cache" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found, dest)  # a copy: the cache keeps its blob
                return dest
        raise SourceError(f"not in the cache {self.cache_dir}")


@dataclass
class StoreSource(FileSource):
    """The plugin's own content-addressed reserve copy (:mod:`.store`)."""

    store: Store
    name: str = "repair store"

    def get(self, rel: str, expected: Expected, workdir: Path) -> Path:
        blob = self.store.blob(expected.sha256) if expected.sha256 else None
        if blob is None or not blob.is_file():
            raise SourceError(f"not in the store {self.store.root}")
        dest = workdir / "store" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(blob, dest)
        return dest


_CONVERT = (
    "import sys\n"
    "from llm_supervisor.model_server.sources import convert_offline_gguf\n"
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
            done = subprocess.run([sys.executable, "-c", _CONVERT, str(dest), self.dtype],
                                  capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL)
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
    stale one can hold wrong bytes). Only files with that suffix are touched."""
    removed = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*.incomplete"):
            if path.is_file() or path.is_symlink():
                try:
                    path.unlink()
                    removed.append(str(path))
                except OSError:
                    pass
    return removed


def clean_stale_workdirs(model_dir: Path) -> None:
    for stale in model_dir.glob(WORKDIR_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def install(candidate: Path, target: Path, owner: tuple[int, int] | None) -> None:
    """Atomically put a verified ``candidate`` at ``target`` (same file system)."""
    with open(candidate, "rb") as fh:
        os.fsync(fh.fileno())
    perms.adopt(candidate, owner)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(candidate, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fetch_files(
    model_dir: Path,
    wanted: dict[str, Expected],
    sources: Sequence[FileSource],
    progress: ProgressFn | None = None,
    span: tuple[float, float] = (0.2, 0.9),
) -> FetchReport:
    """Replace every file in ``wanted`` from the first source whose copy verifies."""
    report = FetchReport()
    owner = perms.owner_of(model_dir)
    workdir = model_dir / f"{WORKDIR_PREFIX}{uuid.uuid4().hex[:8]}"
    workdir.mkdir()
    try:
        for index, (rel, expected) in enumerate(sorted(wanted.items())):
            reasons: list[str] = []
            for source in sources:
                if progress:
                    fraction = span[0] + (span[1] - span[0]) * index / max(1, len(wanted))
                    progress(fraction, f"fetching {rel} from the {source.name}")
                try:
                    candidate = source.get(rel, expected, workdir)
                except SourceError as exc:
                    reasons.append(f"{source.name}: {exc}")
                    continue
                problem = check_file(candidate, rel, expected)
                if problem is not None:
                    reasons.append(f"{source.name}: {problem.kind} ({problem.detail})")
                    continue
                try:
                    install(candidate, model_dir / rel, owner)
                except OSError as exc:
                    reasons.append(f"installing from the {source.name}: {exc}")
                    continue
                report.fixed[rel] = source.name
                break
            else:
                report.failed[rel] = reasons or ["no source available"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report
