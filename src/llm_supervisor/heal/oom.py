"""Out of memory → run cheaper, step by step, and never loop at the same size.

Recognised (last run only): the kernel's OOM kill of the unit's cgroup and the RSS watch's kill
(both noted in the log by the process runtime), Python's ``MemoryError``, llama.cpp/ggml and
CUDA allocation failures, ``std::bad_alloc``. The ladder, for the model server (or any unit that
sets ``LLAMA_N_CTX``/``MAX_BATCH_SIZE``): transformers first loads INT8 where it applies, then
the context halves down to ``MIN_CONTEXT``, then the batch (slots) halves down to 1. At the
floor the unit fails with one sentence. A size that ran out of memory is remembered as a
ceiling: after a stable period the next start goes back to the configured size unless that
size has already run out of memory twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llm_supervisor.heal.evidence import first_match, last_run

KIND = "oom"
MIN_CONTEXT = 512
DEFAULT_CONTEXT = 4096  # ModelServerSettings.llama_n_ctx
DEFAULT_BATCH = 8  # ModelServerSettings.max_batch_size
LADDER_KEYS = ("LLAMA_N_CTX", "MAX_BATCH_SIZE")

PATTERNS = [re.compile(p, re.IGNORECASE) for p in (
    r"killed by the kernel's OOM killer",
    r"killed by the RSS watch",
    r"\bMemoryError\b",
    r"CUDA out of memory|OutOfMemoryError",
    r"failed to allocate|insufficient memory|not enough space in the (context|buffer)",
    r"std::bad_alloc",
    r"Cannot allocate memory",
)]


def evidence(log_tail: Sequence[str]) -> str | None:
    return first_match(last_run(log_tail), PATTERNS)


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class Size:
    context: int
    batch: int
    int8: bool

    def describe(self) -> str:
        text = f"context {self.context}, {self.batch} slot{'s' if self.batch != 1 else ''}"
        return text + (", INT8" if self.int8 else "")


def current_size(env: Mapping[str, str], model_server: bool = True) -> Size:
    """The size the unit runs at; ``USE_INT8`` counts for the model server only."""
    int8 = (env.get("USE_INT8", "") or "").strip().lower() in ("1", "true", "yes", "on")
    return Size(_int(env, "LLAMA_N_CTX", DEFAULT_CONTEXT), _int(env, "MAX_BATCH_SIZE", DEFAULT_BATCH),
                int8 and model_server)


def cheaper(size: Size, engine: str) -> tuple[Size, str] | None:
    """The next step down and what it changes, or None at the floor. ``engine`` is the model
    server's (``transformers`` may go INT8), '' for other units."""
    if engine == "transformers" and not size.int8:
        return Size(size.context, size.batch, True), "INT8"
    if size.context > MIN_CONTEXT:
        smaller = max(MIN_CONTEXT, size.context // 2)
        return Size(smaller, size.batch, size.int8), f"context {smaller}"
    if size.batch > 1:
        fewer = max(1, size.batch // 2)
        return Size(size.context, fewer, size.int8), f"{fewer} slot{'s' if fewer != 1 else ''}"
    return None


def as_environment(size: Size, model_server: bool = True) -> dict[str, str]:
    env = {"LLAMA_N_CTX": str(size.context), "MAX_BATCH_SIZE": str(size.batch)}
    if model_server:
        env["USE_INT8"] = "true" if size.int8 else "false"
    return env


@dataclass
class Ladder:
    """Per unit: the steps taken (for the status line) and the sizes that ran out of memory."""

    configured: Size | None = None
    steps: list[str] = field(default_factory=list)
    failed_sizes: dict[Size, int] = field(default_factory=dict)
    quick_ooms: int = 0  # units without a ladder: OOMs in a row without a stable run

    def line(self) -> str:
        return "OOM → " + " → ".join(self.steps)

    def may_return(self) -> bool:
        """After a stable period: back to the configured size, unless it failed twice there."""
        return self.configured is not None and self.failed_sizes.get(self.configured, 0) < 2
