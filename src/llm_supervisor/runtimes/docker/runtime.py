"""The docker runtime: each unit one container, created through the docker SDK.

The supervisor's policy engine stays in charge: containers get no Docker restart policy, our
probes decide health, and exits come from ``wait()``. Every object we create (container, image,
network, volume) carries our labels (:mod:`docker_labels`); nothing without them is ever
stopped or removed. After a daemon restart a running container is re-adopted when its config
hash (unit fingerprint + image id) still matches, and replaced otherwise (compose's
recreate-on-change). The SDK is blocking: calls run in threads, and the two long-lived streams
(``wait`` and ``logs``) each get a daemon thread that hands results to the event loop.

This module is the :class:`DockerRuntime` that ties the parts together: engine access and
images here; the running container in :mod:`.instance`, re-adoption in :mod:`.adoption`, the
container in :mod:`.containers`, networks and volumes in :mod:`.resources`, exit codes and
health in :mod:`.status`, reset/purge in :mod:`.cleanup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from llm_supervisor.config import Settings
from llm_supervisor.config.settings import PROJECT_DIR
from llm_supervisor.runtimes.base import ExitStatus, Instance, Runtime, RuntimeError_
from llm_supervisor.runtimes.docker import adoption, cleanup, labels
from llm_supervisor.runtimes.docker.base_image import resolve_base
from llm_supervisor.runtimes.docker.build import build_if_changed, plan_build
from llm_supervisor.runtimes.docker.containers import clear_name, container_name, create_and_start
from llm_supervisor.runtimes.docker.errors import api_message, connect, connection_error
from llm_supervisor.runtimes.docker.instance import DockerInstance
from llm_supervisor.runtimes.docker.resources import (
    container_user_ids,
    ensure_network,
    ensure_volumes,
)
from llm_supervisor.runtimes.docker.spec import SpecError, plan_container
from llm_supervisor.runtimes.docker.status import exit_status  # noqa: F401  (re-exported)
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.runtimes.process.runtime import ProcessRuntime
from llm_supervisor.units.model import Unit

T = TypeVar("T")


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

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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
                    if (await self.call(client.images.get, tag)).id == cached[1]:
                        return tag, cached[1]
            plan = plan_build(unit, PROJECT_DIR, tag, self.base_image())
            loop = asyncio.get_running_loop()

            def output(line: str) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(log.note, f"build: {line}")

            async with self._base_lock:  # one debootstrap, however many units start at once
                plan = await self.call(resolve_base, client, plan, self.base_image(), output)
            image_labels = labels.for_object(self.owner, unit.name)
            image_id, _ = await self.call(build_if_changed, client, plan, image_labels, output)
            self._built[unit.name] = (fingerprint, image_id)
            return tag, image_id
        reference = spec.image
        assert reference is not None
        try:
            return reference, (await self.call(client.images.get, reference)).id
        except ImageNotFound:
            pass
        log.note(f"image {reference} not found locally; trying to pull it")
        try:
            image = await self.call(client.images.pull, reference)
        except APIError as exc:
            raise RuntimeError_(
                f"image {reference} is not available locally and could not be pulled "
                f"({api_message(exc)}); build it (`docker build -t {reference} DIR`, see "
                f"docs/docker.md) or set [Container] Build= to a directory with a Dockerfile"
            ) from exc
        return reference, image.id

    # ------------------------------------------------------------------ containers
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
                await self.call(ensure_network, client, plan.network, unit, self.owner)
            owner_ids = await self.call(container_user_ids, client, image_id, unit)
            await self.call(ensure_volumes, client, plan.volumes, unit, self.owner, owner_ids)
            name = container_name(unit, self.owner)
            await self.call(clear_name, client, name, self.owner)
            container = await self.call(
                create_and_start, client, reference, name, object_labels, plan.kwargs,
                " ".join(unit.container.ports) if unit.container else "")
        except APIError as exc:
            raise RuntimeError_(f"docker: {api_message(exc)}") from exc
        log.note(f"container {container.name} ({container.id[:12]}) from {reference}")
        return DockerInstance(self, container, unit, log)

    async def remove_container(self, container: Any) -> None:
        from docker.errors import APIError

        with contextlib.suppress(APIError, RuntimeError_):
            await self.call(container.remove, force=True)

    async def run_pre(self, unit: Unit, argv: list[str], env: Mapping[str, str], log: UnitLog,
                      timeout: float) -> ExitStatus:
        """ExecStartPre= runs on the host (preparing volumes, models, config) before the
        container starts."""
        return await self._host.run_pre(unit, argv, env, log, timeout)

    # ------------------------------------------------------------------ adoption
    async def recover(self, unit: Unit, record: dict[str, Any], log: UnitLog) -> Instance | None:
        return await adoption.recover(self, unit, record, log)

    # ------------------------------------------------------------------ reset / purge
    async def remove_owned(self, purge: bool = False) -> list[str]:
        try:
            client = await self.client()
        except RuntimeError_:
            return []
        return await self.call(cleanup.remove_owned, client, self.owner, purge)

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
