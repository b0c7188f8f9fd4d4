"""A crashing engine: the model server dies at start N times in a row on one engine (e.g.
llama.cpp built for another CPU: SIGILL) → the same model on the other engine.

"At start" means before the run ever became healthy. llama.cpp → transformers works for a
GGUF because the model server converts the GGUF to safetensors once
(:mod:`llm_supervisor.model_server.sources.gguf_convert`); transformers → llama.cpp only when a
GGUF is at hand in the model directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from llm_supervisor.heal.evidence import killed_by, last_run

KIND = "engine_crash"
DEFAULT_CRASHES = 2  # HEAL_ENGINE_CRASHES: crashes at start on one engine before switching
CRASH_SIGNALS = ("SIGILL", "SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE")
# The same signals through a shell (128 + N); other exit codes are the program's own verdict
# (65: weights failed to load, for the model-repair plugin), not an engine crash.
CRASH_EXIT_CODES = {132: "SIGILL", 134: "SIGABRT", 135: "SIGBUS", 136: "SIGFPE", 139: "SIGSEGV"}


def engine_of(env: Mapping[str, str]) -> str:
    """The engine the unit's next start uses (ENGINE=auto: by what the model dir holds)."""
    engine = (env.get("ENGINE", "") or "auto").strip().lower().replace("_", ".").replace("-", ".")
    if engine in ("llama.cpp", "llamacpp"):
        return "llama.cpp"
    if engine == "transformers":
        return "transformers"
    return "llama.cpp" if has_gguf(env) and not has_safetensors(env) else "transformers"


def _model_dir(env: Mapping[str, str]) -> Path | None:
    value = env.get("MODEL_PATH")
    return Path(value) if value else None


def has_gguf(env: Mapping[str, str]) -> bool:
    folder = _model_dir(env)
    return folder is not None and folder.is_dir() and any(folder.glob("*.gguf"))


def has_safetensors(env: Mapping[str, str]) -> bool:
    folder = _model_dir(env)
    return folder is not None and folder.is_dir() and any(folder.glob("*.safetensors"))


def crash(exit_code: int | None, log_tail: Sequence[str]) -> str | None:
    """How the run crashed (``SIGILL``), or None for an end that is not an engine crash."""
    signal_name = killed_by(last_run(log_tail))
    if signal_name in CRASH_SIGNALS:
        return signal_name
    return CRASH_EXIT_CODES.get(exit_code) if exit_code is not None else None


def other_engine(engine: str, env: Mapping[str, str]) -> str | None:
    if engine == "llama.cpp":
        return "transformers"
    if engine == "transformers" and has_gguf(env):
        return "llama.cpp"
    return None


def crashes_allowed(env: Mapping[str, str]) -> int:
    try:
        return max(1, int(env.get("HEAL_ENGINE_CRASHES", "") or DEFAULT_CRASHES))
    except ValueError:
        return DEFAULT_CRASHES
