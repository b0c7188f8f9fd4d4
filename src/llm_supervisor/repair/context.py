"""Which units the model-repair plugin looks after, and everything a repair needs to know about
one: the model directory, the hub repository and endpoint, the local cache and the limits.

All of it comes from the unit's effective environment (what the model server itself sees:
the daemon's settings, ``EnvironmentFile=`` and ``Environment=``), so the repair fetches from
exactly where the server would. No unit-file keys are added.

What the model directory says about itself (the manifest's recorded source) is written by
whoever can write that directory, so it never chooses the download server (only ``HF_ENDPOINT``
does) and a recorded repository or revision is used only when it is a plain hub name
(:func:`hub_repo_id`, :func:`hub_revision`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_SERVER_MARKERS = ("llm_supervisor.model_server", "llm-model-server")
"""A unit whose ``ExecStart`` (or container command) mentions one of these runs our server."""

DEFAULT_ENDPOINT = "https://huggingface.co"

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_REVISION = re.compile(r"[\w][\w.-]{0,199}(/[\w][\w.-]{0,199}){0,3}")


def hub_repo_id(value: object) -> str | None:
    """``value`` when it is a hub repository id (``owner/name``), else None."""
    if isinstance(value, str) and _REPO_ID.fullmatch(value) and ".." not in value:
        return value
    return None


def hub_revision(value: object) -> str | None:
    """``value`` when it is a plain revision (a commit id, ``main``, ``refs/pr/1``), else None:
    never a path that could climb out of the cache's ``refs/`` or ``snapshots/``."""
    if isinstance(value, str) and _REVISION.fullmatch(value) and ".." not in value:
        return value
    return None


def is_model_unit(unit: Any) -> bool:
    """True for units that run the model server (or set ``MODEL_PATH`` themselves)."""
    argv = [*(getattr(unit, "exec_start", None) or [])]
    container = getattr(unit, "container", None)
    if container is not None and getattr(container, "command", None):
        argv.extend(container.command)
    if any(marker in arg for arg in argv for marker in MODEL_SERVER_MARKERS):
        return True
    return "MODEL_PATH" in (getattr(unit, "environment", None) or {})


def truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """The repair budget (environment variables of the unit, documented in docs/repair.md)."""

    attempts: int = 3  # MODEL_REPAIR_ATTEMPTS: attempts in a row without a healthy run between
    max_per_window: int = 10  # MODEL_REPAIR_MAX_PER_WINDOW: all attempts within the window
    window_sec: float = 3600.0  # MODEL_REPAIR_WINDOW_SEC

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        return cls(
            attempts=max(1, int(_float(env, "MODEL_REPAIR_ATTEMPTS", cls.attempts))),
            max_per_window=max(1, int(_float(env, "MODEL_REPAIR_MAX_PER_WINDOW",
                                             cls.max_per_window))),
            window_sec=max(1.0, _float(env, "MODEL_REPAIR_WINDOW_SEC", cls.window_sec)),
        )


@dataclass(frozen=True)
class RepairContext:
    """One model unit as the repair sees it."""

    unit_name: str
    model_dir: Path
    env: Mapping[str, str]

    @classmethod
    def for_unit(cls, unit: Any, env: Mapping[str, str]) -> RepairContext | None:
        """None when the unit does not run the model server or no model path is known."""
        if not is_model_unit(unit):
            return None
        path = env.get("MODEL_PATH")
        if not path:
            return None
        return cls(unit_name=str(getattr(unit, "short_name", None) or unit.name),
                   model_dir=Path(path), env=dict(env))

    @property
    def model_id(self) -> str | None:
        return self.env.get("MODEL_ID") or None

    @property
    def endpoint(self) -> str | None:
        """``HF_ENDPOINT`` of the unit; None means huggingface_hub's default. The only place the
        download server comes from."""
        return self.env.get("HF_ENDPOINT") or None

    @property
    def work_base(self) -> Path | None:
        """Where candidate files are fetched before they replace anything: the daemon's own
        ``STATE_DIR/repair-work/<unit>`` (out of the model service's reach), or None for the
        system's temporary directory."""
        state = self.env.get("STATE_DIR")
        return Path(state) / "repair-work" / self.unit_name if state else None

    @property
    def offline(self) -> bool:
        return truthy(self.env.get("HF_HUB_OFFLINE")) or truthy(self.env.get("TRANSFORMERS_OFFLINE"))

    @property
    def hub_timeout(self) -> float:
        return _float(self.env, "MODEL_REPAIR_HUB_TIMEOUT", _float(self.env, "HUB_TIMEOUT", 10.0))

    @property
    def cache_dir(self) -> Path:
        """The Hugging Face hub cache the unit's processes use (``HF_HUB_CACHE``, ``HF_HOME``)."""
        if self.env.get("HF_HUB_CACHE"):
            return Path(self.env["HF_HUB_CACHE"])
        if self.env.get("HF_HOME"):
            return Path(self.env["HF_HOME"]) / "hub"
        xdg = self.env.get("XDG_CACHE_HOME") or os.path.join(
            self.env.get("HOME") or os.path.expanduser("~"), ".cache")
        return Path(xdg) / "huggingface" / "hub"

    @property
    def limits(self) -> Limits:
        return Limits.from_env(self.env)
