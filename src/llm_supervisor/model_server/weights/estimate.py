"""How much memory a model will need, before it is loaded (the memory budget asks this).

- GGUF: tensor bytes (the file's data section, read from its header) + the KV cache for
  ``context`` cells (``2 × layers × context × kv_width × 2 bytes``, f16 as llama.cpp allocates
  it; ``context`` is shared by all slots) + a fixed engine/process overhead.
- transformers: parameter bytes × the dtype it will run in (safetensors headers give the
  shapes without reading the weights) + the same overhead.

Only the header is read (a few MB at most; ``gguf.GGUFReader`` takes seconds on the 49k-token
vocabulary, this parser milliseconds). The supervisor corrects an estimate with the RSS it
measures once the model is loaded (:mod:`llm_supervisor.supervisor.memory_budget`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# Python + Sanic + the engine's libraries, before any weight is mapped: measured here as the
# model server's RSS with the 98 MB SmolLM2 GGUF (about 290 MB) minus its tensors and KV cache.
ENGINE_OVERHEAD_BYTES = 180 * 1024 * 1024
# Bits per weight of the quantizations we make offline (llama.cpp's table), for estimating a
# requantized file before it exists.
BITS_PER_WEIGHT = {"F16": 16.0, "Q8_0": 8.5, "Q5_1": 6.0, "Q5_0": 5.5, "Q4_1": 5.0, "Q4_0": 4.5}
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1}

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_MAX_HEADER_ITEMS = 10_000_000


class EstimateError(ValueError):
    """The file is not a model this module can read (damaged, not GGUF ...)."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    overhead: int = ENGINE_OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "kv_cache": self.kv_cache, "overhead": self.overhead,
                "total": self.total}


class _Reader:
    def __init__(self, file: BinaryIO):
        self.file = file

    def take(self, size: int) -> bytes:
        data = self.file.read(size)
        if len(data) != size:
            raise EstimateError("GGUF header ends early (truncated file)")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.scalar("<Q")
        if length > 1 << 24:
            raise EstimateError("GGUF string longer than 16 MiB (damaged header)")
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item_kind, count = self.scalar("<I"), self.scalar("<Q")
            if count > _MAX_HEADER_ITEMS:
                raise EstimateError("GGUF array too long (damaged header)")
            if item_kind in _SCALARS:  # skipped: we need no array's content
                self.file.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
                return None
            for _ in range(count):
                self.value(item_kind)
            return None
        raise EstimateError(f"unknown GGUF value type {kind} (damaged header)")


def read_gguf_header(path: Path) -> tuple[dict[str, Any], int]:
    """The scalar metadata of a GGUF file and the size of its tensor data section."""
    with open(path, "rb") as file:
        reader = _Reader(file)
        if reader.take(4) != b"GGUF":
            raise EstimateError(f"{path} is not a GGUF file (no GGUF magic)")
        version = reader.scalar("<I")
        if version < 2:
            raise EstimateError(f"{path}: GGUF version {version} is too old")
        tensors, kv_count = reader.scalar("<Q"), reader.scalar("<Q")
        if tensors > _MAX_HEADER_ITEMS or kv_count > _MAX_HEADER_ITEMS:
            raise EstimateError(f"{path}: implausible GGUF counts (damaged header)")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            value = reader.value(reader.scalar("<I"))
            if value is not None:
                metadata[key] = value
        for _ in range(tensors):
            reader.string()
            dims = reader.scalar("<I")
            file.seek(8 * dims + 4 + 8, 1)
        alignment = int(metadata.get("general.alignment", 32)) or 32
        data_start = -(-file.tell() // alignment) * alignment
        size = path.stat().st_size
    if size < data_start:
        raise EstimateError(f"{path}: file ends inside its header (truncated)")
    return metadata, size - data_start


def kv_cache_bytes(metadata: dict[str, Any], context: int) -> int:
    arch = metadata.get("general.architecture", "llama")
    layers = int(metadata.get(f"{arch}.block_count", 0))
    width = int(metadata.get(f"{arch}.embedding_length", 0))
    heads = int(metadata.get(f"{arch}.attention.head_count", 1)) or 1
    kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads)) or heads
    kv_width = width // heads * kv_heads
    return 2 * layers * context * kv_width * 2


def estimate_gguf(path: Path, context: int, scale: float = 1.0) -> MemoryEstimate:
    """``scale``: bits-per-weight ratio when estimating a requantized copy of ``path``."""
    metadata, tensor_bytes = read_gguf_header(path)
    return MemoryEstimate(int(tensor_bytes * scale), kv_cache_bytes(metadata, context))


def _safetensors_parameters(path: Path) -> dict[str, int]:
    """Parameter count per stored dtype from a safetensors header."""
    with open(path, "rb") as file:
        length = struct.unpack("<Q", file.read(8))[0]
        if length > 100 << 20:
            raise EstimateError(f"{path}: safetensors header too large (damaged)")
        header = json.loads(file.read(length))
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= int(dim)
        counts[info["dtype"]] = counts.get(info["dtype"], 0) + n
    return counts


def estimate_transformers(directory: Path, dtype_bytes: int | None = None) -> MemoryEstimate:
    """Parameters × ``dtype_bytes`` (None: as stored). No KV estimate: the transformers engine
    grows its cache per request, bounded by its batch size and input limits."""
    total = 0
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise EstimateError(f"no *.safetensors in {directory}")
    for file in files:
        for dtype, count in _safetensors_parameters(file).items():
            total += count * (dtype_bytes or DTYPE_BYTES.get(dtype, 4))
    return MemoryEstimate(total, 0)


def estimate_path(path: Path, context: int) -> MemoryEstimate:
    """A GGUF file, a directory holding one, or a transformers checkpoint directory."""
    if path.is_file():
        return estimate_gguf(path, context)
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if ggufs:
        return estimate_gguf(ggufs[0], context)
    if path.is_dir():
        return estimate_transformers(path)
    raise EstimateError(f"{path} does not exist yet")
