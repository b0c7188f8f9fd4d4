"""A unit's container itself: its name, clearing a leftover of ours under that name, and
creating and starting it (removed again when the start fails)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.errors import start_error
from llm_supervisor.units.model import Unit


def container_name(unit: Unit, owner: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", unit.short_name)
    return f"llm-supervisord-{base}-{owner[:6]}"


def clear_name(client: Any, name: str, owner: str) -> None:
    """Remove a leftover container of ours with this name; refuse to touch anyone else's."""
    from docker.errors import NotFound

    try:
        existing = client.containers.get(name)
    except NotFound:
        return
    if not labels.owned_by(existing.labels, owner):
        raise RuntimeError_(f"a container named {name} exists and was not created by this "
                            "llm-supervisord; remove or rename it (`docker rm -f` it if you "
                            "are sure)")
    existing.remove(force=True)


def create_and_start(client: Any, image: str, name: str, object_labels: dict[str, str],
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
