"""Which units the gateway may send traffic to, beyond their health: a rolling restart takes an
instance out of rotation before it drains and stops it, and puts it back once it is healthy.

The gateway plugin registers how it applies a change (:meth:`Rotation.on_change`); taking a unit
out returns only once every registered gateway has applied it, so nothing new reaches the unit
after :meth:`take_out` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Applier = Callable[[], Awaitable[None]]


class Rotation:
    def __init__(self) -> None:
        self.excluded: set[str] = set()
        self._appliers: list[Applier] = []
        self.rolling = asyncio.Lock()  # one rolling restart at a time

    def on_change(self, apply: Applier) -> None:
        self._appliers.append(apply)

    def forget(self, apply: Applier) -> None:
        if apply in self._appliers:
            self._appliers.remove(apply)

    def serves(self, name: str) -> bool:
        return name not in self.excluded

    async def take_out(self, name: str) -> None:
        self.excluded.add(name)
        await self._apply()

    async def put_back(self, name: str) -> None:
        self.excluded.discard(name)
        await self._apply()

    async def _apply(self) -> None:
        for apply in list(self._appliers):
            await apply()
