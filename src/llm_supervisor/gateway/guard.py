"""Which routes need an API key: everything under ``/api`` and ``/v1``.

A guarded prefix that no route of its own serves (``/v1`` reaches the model service through the
``/`` route) gets its own copy of the route that would serve it, marked guarded, so the gateway
checks the key there and the rest of ``/`` (the test page) stays open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from llm_supervisor.gateway.api_keys import GUARDED_PREFIXES
from llm_supervisor.gateway.routes import Route, route_name


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def guard(routes: Iterable[Route], prefixes: Iterable[str] = GUARDED_PREFIXES) -> list[Route]:
    """``routes`` (longest prefix first) with ``guarded`` set where a key is required."""
    prefixes = tuple(prefixes)
    result = [dataclasses.replace(r, guarded=any(_under(r.path_prefix, p) and p != "/"
                                                 for p in prefixes)) for r in routes]
    taken = {r.path_prefix for r in result}
    names = {r.name for r in result}
    for prefix in prefixes:
        if prefix in taken:
            continue
        parent = next((r for r in result if _under(prefix, r.path_prefix)), None)
        if parent is None or parent.strip_prefix:
            continue  # nothing serves it (404 stays 404), or the path would be rewritten
        name = route_name(f"{parent.name}-{prefix.strip('/')}")
        while name in names:
            name += "-guarded"
        names.add(name)
        result.append(dataclasses.replace(parent, name=name, path_prefix=prefix, guarded=True))
    result.sort(key=lambda r: (-len(r.path_prefix.rstrip("/")), r.path_prefix))
    return result
