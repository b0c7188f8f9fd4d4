"""The process runtime: each unit a local process in its own session and process group."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import psutil

from llm_supervisor.supervisor.logs import UnitLog
from llm_supervisor.supervisor.runtimes.base import ExitStatus, Instance, Runtime, RuntimeError_
from llm_supervisor.supervisor.units import Unit

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the daemon dies, so a SIGKILLed daemon does not
    leave its direct children running. Grandchildren are cleaned up from the saved records."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _status_from_returncode(returncode: int) -> ExitStatus:
    if returncode < 0:
        return ExitStatus(signal=-returncode)
    return ExitStatus(code=returncode)


def _group_members(pgid: int, not_before: float | None = None) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        if not_before is not None and proc.info["create_time"] + 1 < not_before:
            continue  # pid/pgid reused by something older than our unit: not ours
        members.append(proc)
    return members


def _signal_tree(pgid: int, root: psutil.Process | None, sig: int) -> None:
    """Signal the process group and any descendant that left it (setsid'd grandchildren)."""
    targets: list[psutil.Process] = []
    if root is not None:
        with contextlib.suppress(psutil.Error):
            targets = root.children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in targets:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


class ProcessInstance(Instance):
    def __init__(self, proc: asyncio.subprocess.Process, log: UnitLog):
        self.proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid  # start_new_session=True: the child leads its own group
        self.ident = str(proc.pid)
        self.started_at = time.time()
        self.log = log
        self._pump = asyncio.create_task(self._copy_output())
        try:
            self._psutil: psutil.Process | None = psutil.Process(proc.pid)
        except psutil.Error:
            self._psutil = None

    async def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.log.write(chunk)
        self.log.flush_partial()

    async def wait(self) -> ExitStatus:
        returncode = await self.proc.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            # Output still in the pipe (or held open by a grandchild) must not block the exit.
            await asyncio.wait_for(asyncio.shield(self._pump), 0.5)
        return _status_from_returncode(returncode)

    async def stop(self, kill_signal: int, timeout: float) -> ExitStatus:
        if self.proc.returncode is None:
            _signal_tree(self.pgid, self._psutil, kill_signal)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.log.note(f"did not stop within {timeout:g}s; sending SIGKILL")
        # Whatever is left of the group (including stragglers after a clean leader exit) dies.
        _signal_tree(self.pgid, self._psutil, signal.SIGKILL)
        returncode = await self.proc.wait()
        self._pump.cancel()
        return _status_from_returncode(returncode)

    def record(self) -> dict[str, Any]:
        return {"pid": self.pid, "pgid": self.pgid, "started_at": self.started_at,
                "ident": self.ident, "runtime": "process"}


class ProcessRuntime(Runtime):
    name = "process"

    async def _spawn(self, argv: list[str], unit: Unit, env: Mapping[str, str]
                     ) -> asyncio.subprocess.Process:
        cwd = unit.working_directory or None
        try:
            return await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=dict(env), cwd=cwd,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        except FileNotFoundError as exc:
            missing = cwd if cwd and not os.path.isdir(cwd) else argv[0]
            raise RuntimeError_(f"{missing}: not found") from exc
        except PermissionError as exc:
            raise RuntimeError_(f"{argv[0]}: permission denied") from exc
        except OSError as exc:
            raise RuntimeError_(f"{argv[0]}: {exc.strerror or exc}") from exc

    async def start(self, unit: Unit, env: Mapping[str, str], log: UnitLog) -> Instance:
        assert unit.exec_start is not None
        return ProcessInstance(await self._spawn(unit.exec_start, unit, env), log)

    async def run_pre(self, unit: Unit, argv: list[str], env: Mapping[str, str], log: UnitLog,
                      timeout: float) -> ExitStatus:
        instance = ProcessInstance(await self._spawn(argv, unit, env), log)
        try:
            return await asyncio.wait_for(instance.wait(), timeout)
        except TimeoutError:
            log.note(f"ExecStartPre {argv[0]} timed out after {timeout:g}s")
            return await instance.stop(signal.SIGTERM, 2.0)
        except asyncio.CancelledError:
            await instance.stop(signal.SIGTERM, 2.0)
            raise

    async def recover(self, unit: Unit, record: dict[str, Any], log: UnitLog) -> Instance | None:
        """A process from a previous daemon cannot be re-attached to our log pipe, so it is
        cleaned up (TERM, then KILL) and the unit starts fresh."""
        pgid = record.get("pgid")
        if not pgid:
            return None
        members = _group_members(int(pgid), record.get("started_at"))
        if not members:
            return None
        log.note(f"cleaning up {len(members)} process(es) left by a previous daemon (pgid {pgid})")
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = await asyncio.to_thread(psutil.wait_procs, members, unit.timeout_stop_sec)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return None
