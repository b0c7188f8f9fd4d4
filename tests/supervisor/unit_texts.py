"""Unit-file texts for the supervisor tests (a plain module: ``from conftest import`` would
resolve to whichever conftest pytest imported first when several test folders run together)."""

from __future__ import annotations

import sys
from pathlib import Path

TINY_HTTP = Path(__file__).resolve().parents[1] / "programs" / "tiny_http.py"


def http_unit(port: int, *extra_args: str, health: bool = True, unit_extra: str = "",
              service_extra: str = "") -> str:
    """A unit running tests/programs/tiny_http.py on ``port``."""
    args = " ".join(extra_args)
    text = (f"[Unit]\nDescription=tiny http {port}\n{unit_extra}\n"
            f"[Service]\nExecStart={sys.executable} {TINY_HTTP} {port} {args}\n"
            f"RestartSec=0.1\nRestartMaxDelaySec=1\n{service_extra}\n")
    if health:
        text += f"[Health]\nCheck=http://127.0.0.1:{port}/\nInterval=0.3\nTimeout=1\nRetries=2\n"
    return text + "[Install]\nWantedBy=stack.target\n"
