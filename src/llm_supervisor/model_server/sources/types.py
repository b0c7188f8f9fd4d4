"""Names shared by the model source modules: errors, progress callback, model formats."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[..., None]
"""``on_progress(fraction, **detail)``: fraction of the current operation done, 0..1."""

FORMAT_GGUF = "gguf"
FORMAT_TRANSFORMERS = "transformers"


class ModelSourceError(RuntimeError):
    """No source could provide a model."""


class HubUnavailable(ModelSourceError):
    """The hub cannot be reached (offline mode, network error, timeout, unknown repo)."""
