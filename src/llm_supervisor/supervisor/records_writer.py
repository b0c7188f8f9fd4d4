"""Saving ``instances.json`` when a unit starts or ends, without failing units on a full disk.

Saves are coalesced: a change schedules one save ``COALESCE_S`` later, and the changes made
meanwhile ride along. Each save writes every record and fsyncs twice, so a thousand units coming
up at once made a thousand saves of up to a thousand records, in the event loop (most of the
time 1,000 units took to become healthy). A daemon killed within those 50 ms loses only the
record of what started in them, which ``PDEATHSIG`` stops with it anyway.

A save that fails (``ENOSPC``, a read-only remount) is said once (``records_not_saved``) and
retried in the background with a growing delay until it succeeds (``records_saved_again``),
each time with what runs *then*; the units keep running meanwhile. What is lost while the
disk is full is only the next daemon's ability to find those processes after a crash — and
``PDEATHSIG`` stops process units with the daemon anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from llm_supervisor.supervisor.records import save_records

log = structlog.get_logger("llm_supervisor.records")

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # then every 10 s
COALESCE_S = 0.05


class RecordsWriter:
    def __init__(self, path: Path, current: Callable[[], dict[str, dict[str, Any]]]):
        self.path = path
        self.current = current
        self.failing: str | None = None
        self._retry: asyncio.Task[None] | None = None
        self._pending: asyncio.TimerHandle | None = None

    def save(self) -> None:
        """Save soon (now when no event loop runs); never raises OSError."""
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._pending = loop.call_later(COALESCE_S, self.flush)

    def flush(self) -> None:
        """Save now; on failure, keep retrying in the background."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._try_save():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next change saves
            if self._retry is None or self._retry.done():
                self._retry = asyncio.get_running_loop().create_task(self._retry_until_saved())

    def _try_save(self) -> bool:
        try:
            save_records(self.path, self.current())
        except OSError as exc:
            error = exc.strerror or str(exc)
            if self.failing is None:
                log.warning("records_not_saved", path=str(self.path), error=error,
                            note="units keep running; retrying until the save succeeds",
                            fix=f"free space on the file system of {self.path.parent}")
            self.failing = error
            return False
        if self.failing is not None:
            log.info("records_saved_again", path=str(self.path))
            self.failing = None
        return True

    async def _retry_until_saved(self) -> None:
        attempt = 0
        while self.failing is not None:
            await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)])
            attempt += 1
            self._try_save()

    async def close(self) -> None:
        if self._pending is not None:
            self.flush()
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
