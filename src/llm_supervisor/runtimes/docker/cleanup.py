"""``reset`` / ``shutdown --purge``: removing every engine object that carries our labels, and
nothing else."""

from __future__ import annotations

import contextlib
from typing import Any

from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.errors import api_message


def remove_owned(client: Any, owner: str, purge: bool) -> list[str]:
    """Containers, then networks, then images (then volumes with ``purge``): each only if it
    carries our project and owner labels. Something still in use by a foreign container
    (a network, an image) is left, and said so."""
    from docker.errors import APIError, NotFound

    mine = {"label": labels.owner_filter(owner)}
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
                                                  "label": labels.owner_filter(owner)})
            count = len(pruned.get("ImagesDeleted") or [])
            if count:
                removed.append(f"{count} dangling build image(s)")
    return removed
