"""The stack under the docker runtime vs local processes, same machine, same run.

    .venv/bin/python bench/bench_docker.py [--runs 3]

Measures, with the shipped model-service and gateway units (llama.cpp on the offline SmolLM2
GGUF, Caddy):

- cold start: daemon launched → model-service and gateway healthy (what `start --wait` waits
  for), images already built; docker vs process runtime (target: docker ≤ 1.5×);
- restart: gateway killed (`docker kill` / SIGKILL of the process) → its HTTP port answers
  again, measured from outside;
- image builds: the shipped Dockerfiles through the daemon's build path with nothing changed
  (digest check only), after `images build` made them once. A first build from nothing (base
  image by debootstrap, then every image) is reported by the first run of
  `pytest tests/runtimes/docker -m slow -s` ("shipped images ready: {...}") and in docs/docker.md; it is not
  repeated here because it means deleting the base image and the builder cache other runs share.

Needs root and a Docker engine (the test fixtures start dockerd when none answers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from test_docker_stack import model_copy, shipped_unit  # noqa: E402

from tests.model_fixtures import free_port  # noqa: E402
from tests.runtimes.docker.docker_fixtures import Daemon  # noqa: E402
from tests.runtimes.docker.docker_images_helpers import build_shipped  # noqa: E402


def _model_dir() -> Path:
    from tests.model_fixtures import cached_smollm2_gguf_dir

    return cached_smollm2_gguf_dir()


def make_daemon(root: Path, client, runtime: str, images: dict[str, str], model: Path) -> Daemon:
    daemon = Daemon(root, client)
    daemon.write_unit("stack.target", (ROOT / "units" / "stack.target").read_text())
    for unit, image in (("model-service.service", images["model-service"]),
                        ("gateway.service", images["gateway"])):
        daemon.write_unit(unit, shipped_unit(unit, image))
    gateway_port = free_port()
    daemon.env_extra.update({
        "LLM_SUPERVISOR_RUNTIME": runtime, "MODEL_PATH": str(model),
        "MODEL_SERVICE_PORT": str(free_port()), "GATEWAY_PORT": str(gateway_port),
        "BIND_ADDRESS": "127.0.0.1", "GATEWAY_PROGRAM": "caddy", "ENGINE": "llama.cpp",
        "USE_INT8": "false",
    })
    daemon.gateway_port = gateway_port  # type: ignore[attr-defined]
    return daemon


def cold_start(daemon: Daemon) -> float:
    started = time.monotonic()
    daemon.start("stack.target")
    daemon.wait_healthy("model-service", timeout=300)
    daemon.wait_healthy("gateway", timeout=120)
    return time.monotonic() - started


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def restart_gateway(daemon: Daemon, runtime: str) -> float:
    port = daemon.gateway_port  # type: ignore[attr-defined]
    while not answers(port):
        time.sleep(0.05)
    if runtime == "docker":
        daemon.container_of("gateway.service").kill()
    else:
        os.kill(int(daemon.status("gateway")["pid"]), signal.SIGKILL)
    started = time.monotonic()
    while answers(port):  # until the kill is visible from outside
        if time.monotonic() - started > 5:
            break
        time.sleep(0.01)
    while not answers(port):
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    daemon.wait_healthy("gateway", timeout=60)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import docker

    client = docker.from_env(timeout=120)
    started = time.monotonic()
    images = build_shipped(client)
    print(f"images (nothing changed, digest checks only): {time.monotonic() - started:.1f} s")
    work = Path(tempfile.mkdtemp(prefix="bench-docker-"))
    model = model_copy(_model_dir(), work / "model")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for run in range(args.runs):
            for runtime in ("process", "docker"):  # alternate: same conditions for both
                daemon = make_daemon(work / f"{runtime}-{run}", client, runtime, images, model)
                try:
                    entry = results.setdefault(runtime, {"cold": [], "restart": []})
                    entry["cold"].append(cold_start(daemon))
                    entry["restart"].append(restart_gateway(daemon, runtime))
                finally:
                    with contextlib.suppress(Exception):
                        daemon.stop()
                    daemon.ctl.close()
                    daemon.remove_leftovers()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for runtime, entry in results.items():
        print(f"{runtime:8s} cold start --wait median {statistics.median(entry['cold']):.2f} s "
              f"{[round(x, 2) for x in entry['cold']]}; gateway kill → answering median "
              f"{statistics.median(entry['restart']):.2f} s "
              f"{[round(x, 2) for x in entry['restart']]}")
    ratio = statistics.median(results["docker"]["cold"]) / statistics.median(
        results["process"]["cold"])
    print(f"cold start docker/process: {ratio:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
