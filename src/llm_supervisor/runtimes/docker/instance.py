"""One running container we watch (:class:`DockerInstance`): a thread waits for its exit,
another copies its logs, and a task surfaces the image's own HEALTHCHECK."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from llm_supervisor.runtimes.base import ExitStatus, Instance
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.status import exit_status, image_healthcheck
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.units.model import Unit

_HEALTH_POLL_SEC = 2.0


class ContainerRemover(Protocol):
    """What an instance needs of its runtime (the docker runtime, without importing it)."""

    async def remove_container(self, container: Any) -> None: ...


class DockerInstance(Instance):
    """One container we watch: a thread waits for its exit, another copies its logs."""

    def __init__(self, runtime: ContainerRemover, container: Any, unit: Unit, log: UnitLog,
                 since: int | None = None):
        self.runtime = runtime
        self.container = container
        self.unit = unit
        self.log = log
        self.ident = container.id[:12]
        self.pid = container.attrs.get("State", {}).get("Pid") or None
        self.config_hash = container.labels.get(labels.CONFIG_HASH, "")
        self.docker_health: str | None = None
        self._loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._logs_done = threading.Event()
        self._stopping = False
        threading.Thread(target=self._wait_thread, daemon=True,
                         name=f"docker-wait:{self.ident}").start()
        threading.Thread(target=self._log_thread, args=(since,), daemon=True,
                         name=f"docker-logs:{self.ident}").start()
        self._health_task: asyncio.Task[None] | None = None
        if image_healthcheck(container):
            self._health_task = asyncio.create_task(self._watch_docker_health())

    # ------------------------------------------------------------------ threads
    def _deliver(self, callback: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: the daemon is gone anyway
            self._loop.call_soon_threadsafe(callback, *args)

    def _resolve(self, status: ExitStatus) -> None:
        if not self._exit.done():
            self._exit.set_result(status)

    def _wait_thread(self) -> None:
        from docker.errors import NotFound

        failures = 0
        while True:
            try:
                result = self.container.wait(timeout=None)
                status = exit_status(result.get("StatusCode"))
                self._note_oom()
                break
            except NotFound:
                self._deliver(self.log.note, "container was removed outside llm-supervisord")
                status = ExitStatus(code=255)
                break
            except Exception as exc:  # engine restarting, connection dropped: keep waiting
                failures += 1
                if failures == 1:
                    self._deliver(self.log.note, f"lost the engine while waiting ({exc}); retrying")
                time.sleep(min(5.0, 0.5 * failures))
        self._deliver(self._resolve, status)

    def _note_oom(self) -> None:
        """Docker's record of a kill for the container's mem_limit (MemoryMax=), in the words
        of the process runtime's cgroup note, so the heal plugin reads both alike."""
        with contextlib.suppress(Exception):
            self.container.reload()
            if self.container.attrs.get("State", {}).get("OOMKilled"):
                self._deliver(self.log.note, "killed by the kernel's OOM killer: its container "
                              "reached mem_limit (MemoryMax=)")

    def _log_thread(self, since: int | None) -> None:
        try:
            kwargs: dict[str, Any] = {"stream": True, "follow": True}
            if since is not None:
                kwargs["since"] = since
            for chunk in self.container.logs(**kwargs):
                self._deliver(self.log.write, chunk)
        except Exception as exc:
            self._deliver(self.log.note, f"log stream ended: {exc}")
        finally:
            self._deliver(self.log.flush_partial)
            self._logs_done.set()

    # ------------------------------------------------------------------ docker's own health
    async def _watch_docker_health(self) -> None:
        """Surface the image's HEALTHCHECK in the log. Our [Health] probes stay in charge; a unit
        without Check= is restarted (through the normal policy) when Docker says unhealthy —
        what compose never does (docker/compose#4826)."""
        while not self._exit.done():
            await asyncio.sleep(_HEALTH_POLL_SEC)
            try:
                await asyncio.to_thread(self.container.reload)
            except Exception:
                continue
            status = (self.container.attrs.get("State", {}).get("Health") or {}).get("Status")
            if status and status != self.docker_health:
                self.docker_health = status
                self.log.note(f"docker health: {status}")
                if status == "unhealthy" and self.unit.health is None and not self._stopping:
                    self.log.note("the image's HEALTHCHECK reports unhealthy and the unit has no "
                                  "[Health] Check=: stopping the container so it is restarted")
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(self.container.kill,
                                                signal=int(self.unit.kill_signal))

    # ------------------------------------------------------------------ Instance API
    async def wait(self) -> ExitStatus:
        status = await asyncio.shield(self._exit)
        # Give the log stream a moment to deliver the last lines, as the process runtime does.
        await asyncio.to_thread(self._logs_done.wait, 0.5)
        return status

    async def stop(self, kill_signal: int, timeout: float) -> ExitStatus:
        from docker.errors import APIError

        self._stopping = True
        if not self._exit.done():
            with contextlib.suppress(APIError):  # already exited between our checks
                await asyncio.to_thread(self.container.kill, signal=int(kill_signal))
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), timeout)
            except TimeoutError:
                self.log.note(f"did not stop within {timeout:g}s; sending SIGKILL")
                with contextlib.suppress(APIError):
                    await asyncio.to_thread(self.container.kill, signal="SIGKILL")
        try:
            status = await asyncio.wait_for(asyncio.shield(self._exit), 30)
        except TimeoutError:
            status = ExitStatus(code=None)
        if self._health_task is not None:
            self._health_task.cancel()
        await self.runtime.remove_container(self.container)
        return status

    def record(self) -> dict[str, Any]:
        return {"pid": self.pid, "ident": self.ident, "runtime": "docker",
                "container_id": self.container.id, "name": self.container.name,
                "config_hash": self.config_hash}
