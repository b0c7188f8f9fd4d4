"""The engine objects a container is given around it: its network and its volumes (named
volumes created, missing bind-mount sources made and, for a non-root container, handed over)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.errors import api_message
from llm_supervisor.runtimes.docker.spec import BUILTIN_NETWORKS, VolumeMount
from llm_supervisor.units.model import Unit


def container_user_ids(client: Any, image_id: str, unit: Unit) -> tuple[int, int] | None:
    """The numeric uid:gid the container runs as ([Container] User=, else the image's USER),
    or None when it is root or a name (only the image's /etc/passwd knows that one)."""
    user = (unit.container.user if unit.container else None) or \
        (client.images.get(image_id).attrs.get("Config") or {}).get("User") or ""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or uid)


def hand_over_empty_dir(path: str, ids: tuple[int, int]) -> None:
    """An empty, root-owned bind-mount directory (one we just created, say the default
    MODEL_PATH) is useless to a non-root container: give it to the container's user. Only when
    the daemon is root; a directory with contents or another owner is left as it is."""
    if os.geteuid() != 0 or not os.path.isdir(path):
        return
    with contextlib.suppress(OSError):
        if os.stat(path).st_uid == 0 and not any(os.scandir(path)):
            os.chown(path, *ids)


def ensure_network(client: Any, name: str, unit: Unit, owner: str) -> None:
    from docker.errors import APIError

    if name in BUILTIN_NETWORKS or name.startswith("container:"):
        return
    if any(n.name == name for n in client.networks.list(names=[name])):
        return  # ours or the user's: either way usable, and only ours is ever removed
    try:
        # check_duplicate: engines before API 1.44 would otherwise happily create a second
        # network of the same name, which makes the name ambiguous for every later start.
        client.networks.create(name, driver="bridge", check_duplicate=True,
                               labels=labels.for_object(owner, unit.name))
    except APIError as exc:  # created concurrently by another unit's start
        if not any(n.name == name for n in client.networks.list(names=[name])):
            raise RuntimeError_(f"cannot create network {name}: {api_message(exc)}") from exc


def ensure_volumes(client: Any, volumes: list[VolumeMount], unit: Unit, owner: str,
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
                hand_over_empty_dir(volume.source, owner_ids)
            continue
        try:
            client.volumes.get(volume.source)
        except NotFound:
            client.volumes.create(volume.source,
                                  labels=labels.for_object(owner, unit.name))
