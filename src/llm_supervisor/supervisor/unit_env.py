"""Which of the daemon's own environment variables a unit's program inherits.

Not all of them: the daemon's environment may hold tokens and passwords (``GITHUB_TOKEN``,
``AWS_SECRET_ACCESS_KEY``, ``HF_TOKEN``) that a browser or a gateway has no business seeing. A
unit's environment is, in this order (later wins):

1. the variables below that are set in the daemon's environment (:data:`DEFAULT_PASS_ENV`, plus
   the model server's own settings, plus the names in ``LLM_SUPERVISOR_PASS_ENV``);
2. the effective config (``MODEL_PATH``, ``MODEL_SERVICE_PORT``, ``STATE_DIR``, ``[vars]``, ...);
3. the unit's ``EnvironmentFile=`` and ``Environment=``;
4. what plugins add for the next start (``unit_environment`` hook: a heal's cheaper config);
5. our markers ``LLM_SUPERVISOR_UNIT`` and ``LLM_SUPERVISOR_OWNER``.

A secret a unit needs goes into that unit's ``Environment=``/``EnvironmentFile=``, or its name
into ``LLM_SUPERVISOR_PASS_ENV`` (comma-separated; ``*`` patterns allowed: ``MY_APP_*``).
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from llm_supervisor.config import Settings
from llm_supervisor.runtimes.process.identity import OWNER_MARKER, UNIT_MARKER
from llm_supervisor.units.env_file import read_env_file
from llm_supervisor.units.model import Unit

DEFAULT_PASS_ENV: tuple[str, ...] = (
    # The basics every program expects.
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
    "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    # Units run the daemon's own interpreter (${PYTHON}) and may need the same import path.
    "PYTHONPATH", "VIRTUAL_ENV",
    # Hugging Face hub and libraries: cache location, mirror, offline mode (not HF_TOKEN).
    "HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
    "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE",
    "TOKENIZERS_PARALLELISM",
    # Accelerators and thread pools.
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS", "LLAMA_*", "GGML_*",
    # Model repair budget (docs/repair.md), the test desktop and the gateway.
    "MODEL_REPAIR_*", "DISPLAY", "XAUTHORITY", "DESKTOP_SCREEN", "DESKTOP_BROWSER",
    # TLS trust and proxies, for model downloads.
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
    "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)


@cache
def model_server_names() -> tuple[str, ...]:
    """Every variable the shipped model server reads its settings from (``DTYPE``, ``DEVICE``,
    ``MAX_BATCH_SIZE``, ...), so ``DTYPE=float32 llm-supervisord start`` keeps working."""
    # Imported on first use: building the model server's settings model costs the daemon's
    # start-up time, and only units need the answer.
    from pydantic import AliasChoices

    from llm_supervisor.model_server.settings import ModelServerSettings

    names: set[str] = set()
    for field_name, field in ModelServerSettings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(field_name.upper())
            continue
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names.update(c.upper() for c in choices if isinstance(c, str) and c != field_name)
    return tuple(sorted(names))


def pass_env_patterns(extra: Iterable[str] = ()) -> tuple[str, ...]:
    return (*DEFAULT_PASS_ENV, *model_server_names(), *extra)


def passed_through(environ: Mapping[str, str], patterns: Iterable[str]) -> dict[str, str]:
    """The part of ``environ`` whose names match one of ``patterns`` (exact names or globs;
    case-sensitive, like the environment itself)."""
    exact = {p for p in patterns if not any(c in p for c in "*?[")}
    globs = [p for p in patterns if p not in exact]
    return {name: value for name, value in environ.items()
            if name in exact or any(fnmatch.fnmatchcase(name, g) for g in globs)}


BASE_TTL_S = 1.0
_base: tuple[Settings, int, float, dict[str, str]] | None = None


def base_environment(settings: Settings) -> dict[str, str]:
    """Parts 1 and 2 of the docstring's order, the same for every unit: kept for a second (for
    the same settings and daemon environment). Building them looks for the gateway's and the
    browser's programs on disk and matches every variable against the patterns; a thousand
    units starting, each asked for its environment several times, made that most of the work."""
    global _base
    environ = hash(frozenset(os.environ.items()))
    now = time.monotonic()
    if _base is not None and _base[0] is settings and _base[1] == environ and \
            now - _base[2] < BASE_TTL_S:
        return dict(_base[3])
    env = passed_through(os.environ, pass_env_patterns(settings.unit_env_passthrough))
    env.update(settings.expansion_vars())
    env[OWNER_MARKER] = str(settings.state_dir.resolve())
    _base = (settings, environ, now, env)  # settings held: its id is not reused meanwhile
    return dict(env)


def unit_environment(settings: Settings, unit: Unit,
                     overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """What ``unit``'s programs get, in the order the module docstring gives (later wins);
    ``overrides`` (plugins' ``unit_environment`` answers: a heal's cheaper configuration) come
    after the unit's own ``Environment=``."""
    env = base_environment(settings)
    owner = env.pop(OWNER_MARKER)
    for path, optional in unit.environment_files:
        env.update(read_env_file(Path(path), optional))
    env.update(unit.environment)
    env.update(overrides or {})
    env[UNIT_MARKER] = unit.name
    env[OWNER_MARKER] = owner
    return env
