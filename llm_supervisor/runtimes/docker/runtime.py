"""The docker runtime: each unit one container, created through the docker SDK.

The supervisor's policy engine stays in charge: containers get no Docker restart policy, our
probes decide health, and exits come from ``wait()``. Every object we create (container, image,
network, volume) carries our labels (:mod:`docker_labels`); nothing without them is ever
stopped or removed. After a daemon restart a running container is re-adopted when its config
hash (unit fingerprint + image id) still matches, and replaced otherwise (compose's
recreate-on-change). The SDK is blocking: calls run in threads, and the two long-lived streams
(``wait`` and ``logs``) each get a daemon thread that hands results to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from llm_supervisor.config import Settings
from llm_supervisor.config.settings import PROJECT_DIR
from llm_supervisor.runtimes.base import ExitStatus, Instance, Runtime, RuntimeError_
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.base_image import resolve_base
from llm_supervisor.runtimes.docker.build import build_if_changed, plan_build
from llm_supervisor.runtimes.docker.errors import (
    api_message,
    connect,
    connection_error,
    start_error,
)
from llm_supervisor.runtimes.docker.spec import (
    BUILTIN_NETWORKS,
    SpecError,
    VolumeMount,
    plan_container,
)
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.runtimes.process.runtime import ProcessRuntime
from llm_supervisor.units.model import Unit

T = TypeVar("T")
_HEALTH_POLL_SEC = 2.0


def engine_available(timeout: float = 1.0) -> bool:
    """Does a Docker engine answer (within about ``timeout``)? Used to pick the default runtime.
    Two requests are made (version negotiation, ping): each gets half the budget."""
    try:
        client = connect(timeout=timeout / 2, max_pool_size=1)
    except RuntimeError_:
        return False
    with contextlib.suppress(Exception):
        client.close()
    return True


def exit_status(code: int | None) -> ExitStatus:
    """Docker reports a signal death as 128+N (docker-init passes it on); map it back so
    Restart=on-abnormal and the status line work as for processes."""
    if code is not None and 128 < code < 128 + 65:
        with contextlib.suppress(ValueError):
            return ExitStatus(signal=int(signal.Signals(code - 128)))
    return ExitStatus(code=code)


def _container_name(unit: Unit, owner: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", unit.short_name)
    return f"llm-supervisord-{base}-{owner[:6]}"


def _container_user_ids(client: Any, image_id: str, unit: Unit) -> tuple[int, int] | None:
    """The numeric uid:gid the container runs as ([Container] User=, else the image's USER),
    or None when it is root or a name (only the image's /etc/passwd knows that one)."""
    user = (unit.container.user if unit.container else None) or \
        (client.images.get(image_id).attrs.get("Config") or {}).get("User") or ""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or uid)


def _hand_over_empty_dir(path: str, ids: tuple[int, int]) -> None:
    """An empty, root-owned bind-mount directory (one we just created, say the default
    MODEL_PATH) is useless to a non-root container: give it to the container's user. Only when
    the daemon is root; a directory with contents or another owner is left as it is."""
    if os.geteuid() != 0 or not os.path.isdir(path):
        return
    with contextlib.suppress(OSError):
        if os.stat(path).st_uid == 0 and not any(os.scandir(path)):
            os.chown(path, *ids)


class DockerInstance(Instance):
    """One container we watch: a thread waits for its exit, another copies its logs."""

    def __init__(self, runtime: DockerRuntime, container: Any, unit: Unit, log: UnitLog,
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
        if _image_healthcheck(container):
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


def _image_healthcheck(container: Any) -> bool:
    """Does the container's config carry a HEALTHCHECK (from the image) that is not NONE?"""
    check = (container.attrs.get("Config") or {}).get("Healthcheck") or {}
    test = check.get("Test") or []
    return bool(test) and test[0] != "NONE"


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.owner = labels.owner_id(settings.state_dir)
        self._client: Any = None
        self._connect_lock = asyncio.Lock()
        self._network_lock = asyncio.Lock()  # units starting together share one network
        self._base_lock = asyncio.Lock()
        self._built: dict[str, tuple[str, str]] = {}  # unit -> (fingerprint, image id)
        self._host = ProcessRuntime()

    # ------------------------------------------------------------------ engine access
    async def client(self) -> Any:
        async with self._connect_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(connect)
            return self._client

    async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in a thread; a lost engine becomes a clear RuntimeError_."""
        from docker.errors import APIError, DockerException
        from requests.exceptions import ConnectionError as RequestsConnectionError

        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except APIError:
            raise
        except (RequestsConnectionError, DockerException, PermissionError) as exc:
            raise connection_error(exc) from exc

    def base_image(self) -> str | None:
        """BASE_IMAGE for our Dockerfiles: [vars] BASE_IMAGE in the config, else the
        environment; unset means each Dockerfile's own default."""
        return self.settings.vars.get("BASE_IMAGE") or os.environ.get("BASE_IMAGE") or None

    # ------------------------------------------------------------------ images
    async def _ensure_image(self, client: Any, unit: Unit, log: UnitLog) -> tuple[str, str]:
        """(reference, image id) of the unit's image, building or pulling it when needed."""
        from docker.errors import APIError, ImageNotFound

        spec = unit.container
        assert spec is not None
        if spec.build:
            tag = spec.image or labels.image_tag(unit, self.owner)
            fingerprint = unit.fingerprint()
            cached = self._built.get(unit.name)
            if cached and cached[0] == fingerprint:
                with contextlib.suppress(ImageNotFound):
                    if (await self._call(client.images.get, tag)).id == cached[1]:
                        return tag, cached[1]
            plan = plan_build(unit, PROJECT_DIR, tag, self.base_image())
            loop = asyncio.get_running_loop()

            def output(line: str) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(log.note, f"build: {line}")

            async with self._base_lock:  # one debootstrap, however many units start at once
                plan = await self._call(resolve_base, client, plan, self.base_image(), output)
            image_labels = labels.for_object(self.owner, unit.name)
            image_id, _ = await self._call(build_if_changed, client, plan, image_labels, output)
            self._built[unit.name] = (fingerprint, image_id)
            return tag, image_id
        reference = spec.image
        assert reference is not None
        try:
            return reference, (await self._call(client.images.get, reference)).id
        except ImageNotFound:
            pass
        log.note(f"image {reference} not found locally; trying to pull it")
        try:
            image = await self._call(client.images.pull, reference)
        except APIError as exc:
            raise RuntimeError_(
                f"image {reference} is not available locally and could not be pulled "
                f"({api_message(exc)}); build it (`docker build -t {reference} DIR`, see "
                f"docs/docker.md) or set [Container] Build= to a directory with a Dockerfile"
            ) from exc
        return reference, image.id

    async def _current_image_id(self, client: Any, unit: Unit) -> str | None:
        """The image id the unit would use now, without building or pulling."""
        from docker.errors import ImageNotFound

        spec = unit.container
        assert spec is not None
        reference = spec.image if not spec.build else (spec.image or labels.image_tag(unit, self.owner))
        try:
            return (await self._call(client.images.get, reference)).id
        except ImageNotFound:
            return None

    # ------------------------------------------------------------------ networks, volumes
    def _ensure_network(self, client: Any, name: str, unit: Unit) -> None:
        from docker.errors import APIError

        if name in BUILTIN_NETWORKS or name.startswith("container:"):
            return
        if any(n.name == name for n in client.networks.list(names=[name])):
            return  # ours or the user's: either way usable, and only ours is ever removed
        try:
            # check_duplicate: engines before API 1.44 would otherwise happily create a second
            # network of the same name, which makes the name ambiguous for every later start.
            client.networks.create(name, driver="bridge", check_duplicate=True,
                                   labels=labels.for_object(self.owner, unit.name))
        except APIError as exc:  # created concurrently by another unit's start
            if not any(n.name == name for n in client.networks.list(names=[name])):
                raise RuntimeError_(f"cannot create network {name}: {api_message(exc)}") from exc

    def _ensure_volumes(self, client: Any, volumes: list[VolumeMount], unit: Unit,
                        owner_ids: tuple[int, int] | None = None) -> None:
        from docker.errors import NotFound

        for volume in volumes:
            if not volume.named:
                # A missing source becomes a directory, as with `docker run -v`, but created by
                # us (so a failure is reported with its reason, not as a container error).
                if not os.path.exists(volume.source):
                    try:
                        os.makedirs(volume.source, exist_ok=True)
                    except OSError as exc:
                        raise RuntimeError_(f"[Container] Volumes: {volume.source} does not exist "
                                            f"and cannot be created ({exc.strerror})") from exc
                if owner_ids is not None and volume.mode == "rw":
                    _hand_over_empty_dir(volume.source, owner_ids)
                continue
            try:
                client.volumes.get(volume.source)
            except NotFound:
                client.volumes.create(volume.source,
                                      labels=labels.for_object(self.owner, unit.name))

    # ------------------------------------------------------------------ containers
    def _clear_name(self, client: Any, name: str) -> None:
        """Remove a leftover container of ours with this name; refuse to touch anyone else's."""
        from docker.errors import NotFound

        try:
            existing = client.containers.get(name)
        except NotFound:
            return
        if not labels.owned_by(existing.labels, self.owner):
            raise RuntimeError_(f"a container named {name} exists and was not created by this "
                                "llm-supervisord; remove or rename it (`docker rm -f` it if you "
                                "are sure)")
        existing.remove(force=True)

    def _create_and_start(self, client: Any, image: str, name: str, object_labels: dict[str, str],
                          kwargs: dict[str, Any], ports_text: str) -> Any:
        from docker.errors import APIError

        container = client.containers.create(image, name=name, labels=object_labels, **kwargs)
        try:
            container.start()
        except APIError as exc:
            with contextlib.suppress(APIError):
                container.remove(force=True)
            raise start_error(exc, ports_text) from exc
        container.reload()
        return container

    async def start(self, unit: Unit, env: Mapping[str, str], log: UnitLog) -> Instance:
        from docker.errors import APIError

        client = await self.client()
        try:
            plan = plan_container(unit, env, PROJECT_DIR, stack=self.owner)
        except SpecError as exc:
            raise RuntimeError_(str(exc)) from exc
        try:
            reference, image_id = await self._ensure_image(client, unit, log)
            object_labels = labels.for_object(self.owner, unit.name,
                                              labels.config_hash(unit, image_id))
            async with self._network_lock:
                await self._call(self._ensure_network, client, plan.network, unit)
            owner_ids = await self._call(_container_user_ids, client, image_id, unit)
            await self._call(self._ensure_volumes, client, plan.volumes, unit, owner_ids)
            name = _container_name(unit, self.owner)
            await self._call(self._clear_name, client, name)
            container = await self._call(
                self._create_and_start, client, reference, name, object_labels, plan.kwargs,
                " ".join(unit.container.ports) if unit.container else "")
        except APIError as exc:
            raise RuntimeError_(f"docker: {api_message(exc)}") from exc
        log.note(f"container {container.name} ({container.id[:12]}) from {reference}")
        return DockerInstance(self, container, unit, log)

    async def remove_container(self, container: Any) -> None:
        from docker.errors import APIError

        with contextlib.suppress(APIError, RuntimeError_):
            await self._call(container.remove, force=True)

    async def run_pre(self, unit: Unit, argv: list[str], env: Mapping[str, str], log: UnitLog,
                      timeout: float) -> ExitStatus:
        """ExecStartPre= runs on the host (preparing volumes, models, config) before the
        container starts."""
        return await self._host.run_pre(unit, argv, env, log, timeout)

    # ------------------------------------------------------------------ adoption
    async def recover(self, unit: Unit, record: dict[str, Any], log: UnitLog) -> Instance | None:
        from docker.errors import APIError, NotFound

        container_id = record.get("container_id")
        if not container_id or unit.container is None:
            return None
        try:
            client = await self.client()
            container = await self._call(client.containers.get, container_id)
        except (NotFound, RuntimeError_):
            return None
        if not labels.owned_by(container.labels, self.owner):
            return None
        if container.status != "running":
            log.note(f"container {container.name} from a previous daemon has {container.status}; "
                     "removing it")
            await self.remove_container(container)
            return None
        image_id = await self._current_image_id(client, unit)
        expected = labels.config_hash(unit, image_id) if image_id else None
        if expected is not None and container.labels.get(labels.CONFIG_HASH) == expected:
            log.note(f"re-adopting running container {container.name} ({container.id[:12]})")
            return DockerInstance(self, container, unit, log, since=int(time.time()))
        log.note(f"the unit or its image changed since {container.name} was created: replacing it")
        with contextlib.suppress(APIError):
            await self._call(container.kill, signal=int(unit.kill_signal))
        with contextlib.suppress(Exception):
            await asyncio.to_thread(container.wait, timeout=unit.timeout_stop_sec)
        await self.remove_container(container)
        return None

    # ------------------------------------------------------------------ reset / purge
    async def remove_owned(self, purge: bool = False) -> list[str]:
        try:
            client = await self.client()
        except RuntimeError_:
            return []
        return await self._call(self._remove_owned, client, purge)

    def _remove_owned(self, client: Any, purge: bool) -> list[str]:
        """Containers, then networks, then images (then volumes with ``purge``): each only if it
        carries our project and owner labels. Something still in use by a foreign container
        (a network, an image) is left, and said so."""
        from docker.errors import APIError, NotFound

        mine = {"label": labels.owner_filter(self.owner)}
        removed: list[str] = []
        for container in client.containers.list(all=True, filters=mine):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
                removed.append(f"container {container.name}")
        def remove(kind: str, name: str, action: Any) -> None:
            try:
                action()
                removed.append(f"{kind} {name}")
            except APIError as exc:
                removed.append(f"kept {kind} {name}: {api_message(exc)}")

        for network in client.networks.list(filters=mine):
            remove("network", network.name, network.remove)
        for image in client.images.list(filters=mine):
            if image.tags and not all(t.startswith(labels.IMAGE_PREFIX) for t in image.tags):
                continue  # someone built FROM our image: the label was inherited, not ours
            remove("image", ", ".join(image.tags or [image.short_id]),
                   lambda image=image: client.images.remove(image.id, force=False))
        if purge:
            for volume in client.volumes.list(filters=mine):
                remove("volume", volume.name, volume.remove)
            with contextlib.suppress(APIError):
                pruned = client.images.prune(filters={"dangling": True,
                                                      "label": labels.owner_filter(self.owner)})
                count = len(pruned.get("ImagesDeleted") or [])
                if count:
                    removed.append(f"{count} dangling build image(s)")
        return removed

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
