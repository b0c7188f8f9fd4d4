"""The labels that mark Docker objects as ours, and the config hash that decides re-adoption.

``owner`` is a hash of the daemon's state directory: two daemons on one engine (a user's stack
and a test run, say) never remove or adopt each other's objects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from llm_supervisor.units.model import Unit

PROJECT = "llm-supervisord.project"
PROJECT_VALUE = "llm-supervisord"
OWNER = "llm-supervisord.owner"
UNIT = "llm-supervisord.unit"
CONFIG_HASH = "llm-supervisord.config-hash"
IMAGE_PREFIX = "llm-supervisord/"


def owner_id(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir.expanduser().resolve()).encode()).hexdigest()[:12]


def config_hash(unit: Unit, image_id: str) -> str:
    """Changes when the unit file's effective definition or the image behind it changes."""
    return hashlib.sha256(f"{unit.fingerprint()}\0{image_id}".encode()).hexdigest()[:16]


def for_object(owner: str, unit_name: str, config: str | None = None) -> dict[str, str]:
    result = {PROJECT: PROJECT_VALUE, OWNER: owner, UNIT: unit_name}
    if config is not None:
        result[CONFIG_HASH] = config
    return result


def owner_filter(owner: str) -> list[str]:
    """A ``filters={"label": ...}`` value matching only objects of this daemon."""
    return [f"{PROJECT}={PROJECT_VALUE}", f"{OWNER}={owner}"]


def owned_by(object_labels: Mapping[str, str] | None, owner: str) -> bool:
    object_labels = object_labels or {}
    return object_labels.get(PROJECT) == PROJECT_VALUE and object_labels.get(OWNER) == owner


def image_tag(unit: Unit, owner: str) -> str:
    """The tag of an image we build for a unit: ``llm-supervisord/<unit>:<owner>``."""
    base = re.sub(r"[^a-z0-9_.-]", "-", unit.short_name.lower())
    return f"{IMAGE_PREFIX}{base}:{owner[:6]}"
