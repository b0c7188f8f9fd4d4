"""Docker's reports in our terms: a container's exit code as an :class:`ExitStatus`, and whether
its config carries an image HEALTHCHECK worth watching."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from llm_supervisor.runtimes.base import ExitStatus


def exit_status(code: int | None) -> ExitStatus:
    """Docker reports a signal death as 128+N (docker-init passes it on); map it back so
    Restart=on-abnormal and the status line work as for processes."""
    if code is not None and 128 < code < 128 + 65:
        with contextlib.suppress(ValueError):
            return ExitStatus(signal=int(signal.Signals(code - 128)))
    return ExitStatus(code=code)


def image_healthcheck(container: Any) -> bool:
    """Does the container's config carry a HEALTHCHECK (from the image) that is not NONE?"""
    check = (container.attrs.get("Config") or {}).get("Healthcheck") or {}
    test = check.get("Test") or []
    return bool(test) and test[0] != "NONE"
