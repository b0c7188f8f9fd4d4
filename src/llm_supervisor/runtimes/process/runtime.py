"""The process runtime: each unit a local process in its own session and process group.

Nothing of ours runs in the child between fork and exec (no ``preexec_fn``: in a threaded daemon
it can deadlock on a lock another thread held at fork time). The parent-death signal is set by
util-linux's ``setpriv --pdeathsig``, which then execs the unit's program under the same pid; where
``setpriv`` is missing, units do without it and the next daemon cleans up from its records.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping
from typing import Any

import psutil
import structlog

from llm_supervisor.runtimes.base import ExitStatus, Instance, Runtime, RuntimeError_
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.runtimes.process import identity, memory_guard
from llm_supervisor.runtimes.process import user as process_user
from llm_supervisor.runtimes.process.safe_start import safe_start
from llm_supervisor.units.model import Unit

logger = structlog.get_logger("llm_supervisor.runtime.process")

# What a unit gets when the daemon dies (SIGKILL included): TERM, so it can shut down cleanly.
# A unit that ignores it, and its grandchildren, are cleaned up by the next daemon (records).
PDEATHSIG = "TERM"
LEADER_POLL_S = 0.1  # without a pidfd: how soon a main process's exit is seen
LEFTOVER_GRACE_S = 2.0  # after the main process exits, before its stragglers get SIGKILL
PIPE_GRACE_S = 0.3  # for the last output after the main process exits


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --`` where setpriv (util-linux) is installed, else nothing."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        logger.warning("no_pdeathsig", reason="setpriv (util-linux) not found on PATH",
                       consequence="units keep running if the daemon is killed; the next "
                                   "daemon start cleans them up",
                       fix="apt-get install util-linux")
        return []
    return [setpriv, f"--pdeathsig={PDEATHSIG}", "--"]


def _check_program(argv0: str, env: Mapping[str, str], cwd: str | None) -> None:
    """The errors exec would give, raised before spawning (behind setpriv, exec happens in a
    program of its own, which could only report them as exit status 127 in the unit's log)."""
    if cwd and not os.path.isdir(cwd):
        raise RuntimeError_(f"{cwd}: not found")
    if os.sep in argv0:
        program = argv0 if cwd is None else os.path.join(cwd, argv0)
        if not os.path.exists(program):
            raise RuntimeError_(f"{argv0}: not found")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise RuntimeError_(f"{argv0}: permission denied")
    elif shutil.which(argv0, path=env.get("PATH", os.defpath)) is None:
        raise RuntimeError_(f"{argv0}: not found")


def _status_from_returncode(returncode: int) -> ExitStatus:
    if returncode < 0:
        return ExitStatus(signal=-returncode)
    return ExitStatus(code=returncode)


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


def _pidfd_exit(pidfd: int) -> asyncio.Future[None]:
    """A future done when the process behind ``pidfd`` exits (the descriptor turns readable);
    the caller removes the reader before it closes the descriptor."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    return done


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ProcessInstance(Instance):
    def __init__(self, proc: asyncio.subprocess.Process, log: UnitLog,
                 markers: Mapping[str, str] | None = None,
                 memory: memory_guard.MemoryGuard | None = None):
        self.proc = proc
        self.memory = memory  # MemoryMax=/MemoryHigh= (cgroup or RSS watch)
        self.pid = proc.pid
        self.pgid = proc.pid  # start_new_session=True: the child leads its own group
        self.ident = str(proc.pid)
        self.started_at = time.time()
        # Read now, while the pid is surely still ours (we have not reaped it).
        self.start_ticks = identity.start_ticks(proc.pid)
        self.boot_id = identity.boot_id()
        self.markers = dict(markers or {})
        self.log = log
        self._pump = asyncio.create_task(self._copy_output())
        if memory is not None:
            memory.started(self.pid, self.pgid)
        try:
            self._psutil: psutil.Process | None = psutil.Process(proc.pid)
        except psutil.Error:
            self._psutil = None
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # opened while surely ours
            self._pidfd = os.pidfd_open(proc.pid)

    async def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.log.write(chunk)
        self.log.flush_partial()

    async def _leader_exited(self) -> int:
        """The main process's exit status as soon as it exits: ``proc.wait()`` alone also waits
        for its output pipe to close, which a grandchild holding it open never does. A pidfd
        (Linux 5.3+) says when it exits without polling; else the status is polled."""
        waiting = asyncio.ensure_future(self.proc.wait())
        exited = _pidfd_exit(self._pidfd) if self._pidfd is not None else None
        try:
            if exited is not None:
                either: set[asyncio.Future[Any]] = {waiting, exited}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            while not waiting.done() and self.proc.returncode is None:
                # exited, and the child watcher is about to record its status (or no pidfd)
                await asyncio.wait({waiting}, timeout=LEADER_POLL_S)
        finally:
            if exited is not None and self._pidfd is not None:
                asyncio.get_running_loop().remove_reader(self._pidfd)  # before it is closed
                exited.cancel()
        self._close_pidfd()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def _close_pidfd(self) -> None:
        """Close the pidfd, first taking it out of the event loop's selector: a reader left
        registered on a closed descriptor stays in asyncio's table, and when the number is
        reused (the next unit's output pipe) that pipe never reports its end, so a stop hangs."""
        if self._pidfd is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing registered
                asyncio.get_running_loop().remove_reader(self._pidfd)
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    async def wait(self) -> ExitStatus:
        returncode = await self._leader_exited()
        await self._stop_leftovers()
        with contextlib.suppress(asyncio.TimeoutError):
            # Output still in the pipe (or held open by a grandchild) must not block the exit.
            await asyncio.wait_for(asyncio.shield(self._pump), 0.5)
        if self.memory is not None:
            self.memory.ended()
        return _status_from_returncode(returncode)

    async def _stop_leftovers(self, grace: float = LEFTOVER_GRACE_S) -> None:
        """The main process has exited: what it started goes with it (systemd's
        ``KillMode=control-group``): its process group (``killpg``, no process listing), and,
        when something still holds the unit's output pipe open, any process that carries this
        unit's markers (a grandchild that left the group with setsid). TERM, then KILL after
        ``grace``. The common case — nothing left — costs one ``killpg(pgid, 0)``."""
        group_left = _group_alive(self.pgid)
        if group_left:
            _signal_group(self.pgid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pump), PIPE_GRACE_S)
        escaped: list[psutil.Process] = []
        if not self._pump.done() and self.markers:
            escaped = await asyncio.to_thread(self._marked_processes)
        if not group_left and not escaped:
            return
        self.log.note("processes of the unit still running after its main process exited: "
                      "stopping them (as systemd's KillMode=control-group)")
        for proc in escaped:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (
                _group_alive(self.pgid) or any(p.is_running() for p in escaped)):
            await asyncio.sleep(0.05)
        _signal_group(self.pgid, signal.SIGKILL)
        for proc in escaped:
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _marked_processes(self) -> list[psutil.Process]:
        """Processes carrying this unit's markers, this daemon excluded (a full listing: only
        when a grandchild holds the output pipe after the main process exited)."""
        found = []
        for proc in psutil.process_iter():
            if proc.pid != os.getpid() and identity.carries_markers(proc, self.markers):
                found.append(proc)
        return found

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
        if self.memory is not None:
            self.memory.ended()
        self._close_pidfd()
        return _status_from_returncode(returncode)

    def record(self) -> dict[str, Any]:
        """Enough to prove, after a daemon restart, that a process is this one or its child
        (see :mod:`process_identity`)."""
        return {"pid": self.pid, "pgid": self.pgid, "started_at": self.started_at,
                "start_ticks": self.start_ticks, "boot_id": self.boot_id,
                "markers": self.markers, "ident": self.ident, "runtime": "process"}


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self) -> None:
        self._prefix: list[str] | None = None

    def _exec_prefix(self) -> list[str]:
        if self._prefix is None:
            self._prefix = pdeathsig_prefix()
        return self._prefix

    async def _spawn(self, argv: list[str], unit: Unit, env: Mapping[str, str],
                     outer: list[str] | None = None) -> asyncio.subprocess.Process:
        cwd, env = safe_start(unit, env)
        _check_program(argv[0], env, cwd)
        prefix, switch = self._exec_prefix(), {}
        account = process_user.run_as(unit.user, unit.group, unit.ambient_capabilities)
        if account is not None:  # User=/Group= (see process_user)
            prefix = process_user.setpriv_prefix(account, prefix)
            switch, env = account.popen_kwargs(), account.environment(env)
        try:
            return await asyncio.create_subprocess_exec(
                *(outer or []), *prefix, *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=dict(env),
                cwd=cwd, start_new_session=True, **switch,
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
        memory = memory_guard.for_start(unit, env, log)  # joins its cgroup before exec (root)
        return ProcessInstance(await self._spawn(unit.exec_start, unit, env, memory.prefix), log,
                               identity.markers_from(env), memory)

    async def run_pre(self, unit: Unit, argv: list[str], env: Mapping[str, str], log: UnitLog,
                      timeout: float) -> ExitStatus:
        instance = ProcessInstance(await self._spawn(argv, unit, env), log,
                                   identity.markers_from(env))
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
        cleaned up (TERM, then KILL) and the unit starts fresh. Only processes proven to be
        ours are signalled (:mod:`process_identity`); anything else is left alone, and why is
        written to the unit's log."""
        members = await asyncio.to_thread(self._recoverable, unit, record, log)
        if not members:
            return None
        log.note(f"cleaning up {len(members)} process(es) left by a previous daemon "
                 f"(pgid {record.get('pgid')})")
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = await asyncio.to_thread(psutil.wait_procs, members, unit.timeout_stop_sec)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return None

    @staticmethod
    def _recoverable(unit: Unit, record: dict[str, Any], log: UnitLog) -> list[psutil.Process]:
        pgid, pid, ticks = record.get("pgid"), record.get("pid"), record.get("start_ticks")
        markers = record.get("markers")
        if not isinstance(pgid, int) or pgid <= 1:
            return []
        if record.get("boot_id") is None or record.get("boot_id") != identity.boot_id():
            log.note(f"record of pgid {pgid} is from another boot (or too old to say): "
                     "nothing signalled")
            return []
        if not isinstance(pid, int) or not isinstance(ticks, int) or not isinstance(markers, dict):
            log.note(f"record of pgid {pgid} lacks pid, start time or markers: nothing signalled")
            return []
        markers = {str(k): str(v) for k, v in markers.items()}
        if markers.get(identity.UNIT_MARKER) != unit.name:
            log.note(f"record of pgid {pgid} belongs to {markers.get(identity.UNIT_MARKER)!r}, "
                     f"not {unit.name}: nothing signalled")
            return []
        ours, strangers = identity.verified_members(pgid, pid, ticks, markers)
        for reason in strangers:
            log.note(f"left alone (not started by us): {reason}")
        return ours
