"""Choosing a free X display and waiting until it answers."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

X11_SOCKET_DIR = Path("/tmp/.X11-unix")
FIRST_DISPLAY = 99  # well above the displays a desktop session or ssh -X uses


def display_in_use(number: int) -> bool:
    """A lock file or a socket means a server has (or had) the display; a lock whose pid is gone
    is stale and Xvfb itself removes it."""
    lock = Path(f"/tmp/.X{number}-lock")
    if (X11_SOCKET_DIR / f"X{number}").exists() and not lock.exists():
        return True
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return lock.exists()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_display(start: int = FIRST_DISPLAY, count: int = 100) -> int:
    for number in range(start, start + count):
        if not display_in_use(number):
            return number
    raise RuntimeError(f"no free X display between :{start} and :{start + count - 1}")


def display_answers(number: int) -> bool:
    """True when something accepts connections on the display's Unix socket (a socket file left
    by a killed Xvfb does not count)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(X11_SOCKET_DIR / f"X{number}"))
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.close()


def wait_for_display(number: int, timeout: float = 20.0) -> bool:
    """True once the X server on display ``number`` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if display_answers(number):
            return True
        time.sleep(0.05)
    return False
