"""What a loader hands to an engine, and the one error a damaged model raises.

Free of torch and llama.cpp imports, so either engine's loader (and the app) can use it without
loading the other engine's library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.model_server.weights import manifest as manifest_mod


class WeightsLoadError(Exception):
    """The model's files could not be loaded. ``file`` is the file to blame (best guess)."""

    def __init__(
        self,
        file: str,
        error: BaseException | str,
        *,
        problems: list | None = None,
        library_error: BaseException | None = None,
    ):
        self.file = file
        self.error = error
        self.problems = problems or []
        self.library_error = library_error
        super().__init__(f"{file}: {error}")

    @property
    def error_type(self) -> str:
        return type(self.error).__name__ if isinstance(self.error, BaseException) else "ManifestMismatch"


@dataclass
class LoadedModel:
    """A loaded model and the facts ``/api/health`` reports about it.

    ``model`` and ``tokenizer`` are the engine's own objects (a transformers model and tokenizer,
    or a :class:`~.llama_model.LlamaModel` and its :class:`~.llama_model.LlamaTokenizer`).
    """

    model: Any
    tokenizer: Any
    name: str
    path: Path
    source: dict[str, Any]
    device: str
    dtype: str
    quantization: str
    int8_requested: bool
    int8_fallback_reason: str | None
    load_seconds: float
    max_context: int
    eos_token_ids: set[int] = field(default_factory=set)
    engine: str = "transformers"
    int8_applicable: bool = True


def verify_against_manifest(model_dir: Path, mode: str, log: Any) -> None:
    """Catch what loads silently: files whose size (or digest, with ``sha256``) differs from
    the manifest. A directory without a manifest is not checked."""
    if mode == "off":
        return
    try:
        if manifest_mod.read_manifest(model_dir) is None:
            if log:
                log.info("manifest_absent", model_path=str(model_dir))
            return
    except manifest_mod.ManifestError as exc:
        if log:
            log.warning("manifest_unreadable", model_path=str(model_dir), error=str(exc))
        return
    problems = manifest_mod.verify_model_dir(model_dir, check_hashes=(mode == "sha256"))
    if problems:
        first = problems[0]
        raise WeightsLoadError(
            str(model_dir / first.path),
            f"{first.kind}: {first.detail}",
            problems=[p.to_dict() for p in problems],
        )
