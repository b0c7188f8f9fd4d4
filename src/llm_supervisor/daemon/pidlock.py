"""One daemon per state directory: an flock on ``daemon.pid``, released even on SIGKILL."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TextIO

from llm_supervisor.core.errors import SupervisorError


class DaemonError(SupervisorError):
    """The daemon cannot start; the message says why and what to do."""


class PidLock:
    def __init__(self, path: Path):
        self.path = path
        self.handle: TextIO | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "?"
            handle.close()
            raise DaemonError(f"another llm-supervisord (pid {other}) uses {self.path.parent}; "
                              "stop it with `llm-supervisord stop`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.handle.close()
            self.handle = None
