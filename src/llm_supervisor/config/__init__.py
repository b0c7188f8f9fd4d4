"""Settings resolved once (pydantic-settings) and passed down; default paths in :mod:`.paths`.

``Settings`` and ``load_settings`` are imported lazily so that ``config.paths`` stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Settings", "load_settings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from llm_supervisor.config import settings

        return getattr(settings, name)
    raise AttributeError(name)
