"""Loading progress, as ``/api/health`` reports it while the model loads.

Loading is a sequence of stages (download, conversion, tokenizer, weights, warm-up), each given a
slice of the 0..1 range. Within a stage, progress comes from real counters: bytes downloaded,
GGUF tensors de-quantised, weight tensors loaded. It never goes backwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["loading", "ready", "error"]


@dataclass
class LoadState:
    """A snapshot of the loading state."""

    status: Status
    stage: str
    progress: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


class LoadProgress:
    """Thread-safe progress tracker: the loader thread writes, HTTP handlers read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: Status = "loading"
        self._stage = "starting"
        self._lo = 0.0
        self._hi = 0.0
        self._progress = 0.0
        self._detail: dict[str, Any] = {}
        self._error: dict[str, Any] | None = None
        self._scope = (0.0, 1.0)
        self.started = time.monotonic()

    def scope(self, lo: float, hi: float) -> None:
        """Map later :meth:`stage` ranges into ``[lo, hi]`` (for example: the load after a
        download only owns the last 20 %)."""
        with self._lock:
            self._scope = (lo, hi)

    def stage(self, name: str, start: float, end: float, **detail: Any) -> None:
        """Enter stage ``name`` owning the progress range ``[start, end]``."""
        with self._lock:
            lo, hi = self._scope
            start, end = lo + (hi - lo) * start, lo + (hi - lo) * end
            self._stage = name
            self._lo, self._hi = max(start, self._progress), max(end, self._progress)
            self._progress = max(self._progress, self._lo)
            self._detail = dict(detail)

    def update(self, fraction: float, **detail: Any) -> None:
        """Set the fraction (0..1) of the current stage that is done."""
        fraction = min(max(fraction, 0.0), 1.0)
        with self._lock:
            value = self._lo + (self._hi - self._lo) * fraction
            self._progress = max(self._progress, min(value, 0.999))
            self._detail.update(detail)

    def ready(self) -> None:
        with self._lock:
            self._status, self._stage, self._progress = "ready", "ready", 1.0
            self._detail = {}

    def fail(self, error: dict[str, Any]) -> None:
        with self._lock:
            self._status, self._error = "error", error

    def snapshot(self) -> LoadState:
        with self._lock:
            return LoadState(
                self._status, self._stage, round(self._progress, 4), dict(self._detail), self._error
            )


class CountingBar:
    """A minimal tqdm stand-in that forwards ``update(n)`` counts to a callback.

    huggingface_hub and transformers accept a tqdm class (or a creation hook); this one draws
    nothing and reports progress instead.
    """

    def __init__(
        self,
        *args: Any,
        total: float | None = None,
        initial: float = 0,
        on_update: Any = None,
        iterable: Any = None,
        **kwargs: Any,
    ) -> None:
        if iterable is None and args:
            iterable = args[0]
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.n = initial
        self._on_update = on_update
        self.desc = kwargs.get("desc", "")

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> CountingBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0
        if self._on_update is not None:
            self._on_update(self)

    def close(self) -> None:
        pass

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    set_description_str = set_postfix = set_postfix_str = set_description
