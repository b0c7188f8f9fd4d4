"""structlog configuration: JSON lines when not on a TTY, readable console output on one.

With ``log_file`` (the background daemon's ``daemon.log``) events go to a size-rotated file
(the same rotation as unit logs, :mod:`llm_supervisor.core.rotating_file`) whose writes
never raise: a full disk loses log lines, not the daemon. File descriptors 1 and 2 follow the
current file, so a traceback printed outside structlog lands there too.
"""

from __future__ import annotations

import contextlib
import json as json_module
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import structlog

from llm_supervisor.core.rotating_file import RotatingFile


class RotatingLogStream:
    """A text stream over :class:`RotatingFile` for structlog and stdlib logging."""

    def __init__(self, path: Path, max_bytes: int, backups: int, redirect_std_fds: bool = True):
        self._redirect = redirect_std_fds
        self.file = RotatingFile(path, max_bytes, backups, resume_note=_resume_note,
                                 on_open=self._follow_with_std_fds)

    def _follow_with_std_fds(self, fd: int) -> None:
        if self._redirect:
            for std in (1, 2):
                with contextlib.suppress(OSError):
                    os.dup2(fd, std)

    def write(self, text: str) -> int:
        self.file.write(text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass  # unbuffered

    def isatty(self) -> bool:
        return False


_daemon_log: RotatingLogStream | None = None


def reopen_daemon_log() -> None:
    """``reopen-logs`` / SIGUSR2: an external rotator may have moved ``daemon.log`` away."""
    if _daemon_log is not None:
        _daemon_log.file.reopen()


def _resume_note(dropped: int, error: str) -> bytes:
    event = {"event": "daemon_log_lines_dropped", "bytes": dropped, "error": error,
             "level": "warning",
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return (json_module.dumps(event) + "\n").encode()


def configure_logging(stream: TextIO | None = None, level: int = logging.INFO,
                      json: bool | None = None, log_file: Path | None = None,
                      max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> None:
    global _daemon_log
    if log_file is not None:
        _daemon_log = RotatingLogStream(log_file, max_bytes, backups)
        stream = _daemon_log  # type: ignore[assignment]
    stream = stream or sys.stderr
    use_json = not stream.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per event (PrintLogger writes the newline separately: a rotation could
        # fall between the two).
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # Libraries that use stdlib logging (sanic, docker) go to the same stream, plainly.
    logging.basicConfig(stream=stream, level=logging.WARNING, format="%(name)s: %(message)s",
                        force=log_file is not None)
