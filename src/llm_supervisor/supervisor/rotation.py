"""Which units the gateway may send traffic to, beyond their health: a rolling restart takes an
instance out of rotation before it drains and stops it, and puts it back once it is healthy.

Each change is handed to ``apply`` (the manager fires the ``unit_rotation_changed`` hook, and
waits for the gateway to act on it), so nothing new reaches a unit after :meth:`take_out`
returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Applier = Callable[[str, bool], Awaitable[None]]


class Rotation:
    def __init__(self, apply: Applier) -> None:
        self.excluded: set[str] = set()
        self._apply = apply
        self.rolling = asyncio.Lock()  # one rolling restart at a time

    def serves(self, name: str) -> bool:
        return name not in self.excluded

    async def take_out(self, name: str) -> None:
        self.excluded.add(name)
        await self._apply(name, False)

    async def put_back(self, name: str) -> None:
        self.excluded.discard(name)
        await self._apply(name, True)
