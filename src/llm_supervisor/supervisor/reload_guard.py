"""A reload and a repair never overlap.

A reload stops and replaces the runners of changed units; a repair (by hand or automatic)
stops its unit, changes the model directory and starts the unit again. Interleaved, the
reload would start the new definition while the repair still writes the model, and the
repair would then restart a runner the reload already discarded — an unsupervised second
instance. So a reload first waits for every running repair to finish, and while it runs no
repair starts (one by hand is refused with 409 and may be retried; an automatic one is skipped
and the unit's restart policy applies).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any


@asynccontextmanager
async def repairs_paused(runners: Iterable[Any]) -> AsyncIterator[None]:
    """Hold every runner's repair lock (waiting for a repair in progress) for the block."""
    async with AsyncExitStack() as stack:
        for runner in list(runners):
            await stack.enter_async_context(runner.repair_lock)
        yield
