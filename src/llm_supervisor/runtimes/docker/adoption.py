"""After a daemon restart: a running container of ours is re-adopted when its config hash
(unit fingerprint + image id) still matches, and replaced otherwise (compose's
recreate-on-change); a stopped one is removed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from llm_supervisor.runtimes.base import Instance, RuntimeError_
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.instance import ContainerRemover, DockerInstance
from llm_supervisor.runtimes.logs import UnitLog
from llm_supervisor.units.model import Unit

T = TypeVar("T")


class AdoptionHost(ContainerRemover, Protocol):
    """What adoption needs of the docker runtime (without importing it)."""

    owner: str

    async def client(self) -> Any: ...

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


async def current_image_id(host: AdoptionHost, client: Any, unit: Unit) -> str | None:
    """The image id the unit would use now, without building or pulling."""
    from docker.errors import ImageNotFound

    spec = unit.container
    assert spec is not None
    reference = spec.image if not spec.build else (spec.image or labels.image_tag(unit, host.owner))
    try:
        return (await host.call(client.images.get, reference)).id
    except ImageNotFound:
        return None


async def recover(host: AdoptionHost, unit: Unit, record: dict[str, Any],
                  log: UnitLog) -> Instance | None:
    from docker.errors import APIError, NotFound

    container_id = record.get("container_id")
    if not container_id or unit.container is None:
        return None
    try:
        client = await host.client()
        container = await host.call(client.containers.get, container_id)
    except (NotFound, RuntimeError_):
        return None
    if not labels.owned_by(container.labels, host.owner):
        return None
    if container.status != "running":
        log.note(f"container {container.name} from a previous daemon has {container.status}; "
                 "removing it")
        await host.remove_container(container)
        return None
    image_id = await current_image_id(host, client, unit)
    expected = labels.config_hash(unit, image_id) if image_id else None
    if expected is not None and container.labels.get(labels.CONFIG_HASH) == expected:
        log.note(f"re-adopting running container {container.name} ({container.id[:12]})")
        return DockerInstance(host, container, unit, log, since=int(time.time()))
    log.note(f"the unit or its image changed since {container.name} was created: replacing it")
    with contextlib.suppress(APIError):
        await host.call(container.kill, signal=int(unit.kill_signal))
    with contextlib.suppress(Exception):
        await asyncio.to_thread(container.wait, timeout=unit.timeout_stop_sec)
    await host.remove_container(container)
    return None
