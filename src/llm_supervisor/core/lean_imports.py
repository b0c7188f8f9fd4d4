"""Import structlog, httpx and Sanic without the optional extras they pull in when installed.

structlog.dev imports rich (and through it pygments) only to colour tracebacks on a terminal,
and structlog's thread-local module greenlet (with libstdc++) for gevent users; httpx imports
click, rich and pygments for its command-line client; Sanic imports uvloop and ujson as
speed-ups, which the control socket (a few requests a second, on the daemon's own asyncio loop)
does not need. The daemon would hold them all for its whole life: 8 MB of its ~68 MB
(``bench/bench_supervisor.py --only imports``). While these libraries are first imported the
extras are hidden (a ``None`` in :data:`sys.modules` makes an import fail, which each library
handles by leaving the feature out: Sanic then uses the standard library's json, with the same
compact output); a later ``import rich`` (the CLI's tables) works as usual.
"""

from __future__ import annotations

import importlib
import sys

LIBRARIES = ("structlog", "httpx", "sanic")
UNUSED_EXTRAS = ("rich", "pygments", "click", "greenlet", "uvloop", "ujson")


def import_without_unused_extras() -> None:
    """First import of :data:`LIBRARIES` with :data:`UNUSED_EXTRAS` hidden; a no-op once the
    libraries are loaded, and an extra that is loaded already stays as it is."""
    if all(name in sys.modules for name in LIBRARIES):
        return
    hidden = [name for name in UNUSED_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        for name in LIBRARIES:
            importlib.import_module(name)
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
