"""Mean time to repair (damage detected → healthy again) vs a plain cold start of the same model,
both measured in this run, with the real daemon and the real model server.

    .venv/bin/python bench/bench_repair.py [--model DIR | --tiny] [--repeats 3] [--source hub]

- cold start: ``start`` of the stopped model-service → status ``running``/``healthy``;
- repair: the weights are damaged while the service runs and the server process is SIGKILLed.
  ``truncated`` is caught by the plugin's stat-only check at the exit; ``bytes-flipped`` only by
  the server's own sha256 check on the next start (``VERIFY_MODEL=sha256``, set for both
  measurements so the cold start pays for the same check). MTTR runs from the daemon's
  ``model_damage_detected`` event to ``healthy``.
- ``--source``: where the repair fetches from: ``hub`` (a local HTTP server speaking the hub
  protocol, the model served as a hub repo), ``cache`` (the local Hugging Face cache, offline),
  ``store`` (the plugin's reserve copy, offline), ``gguf`` (re-convert the offline SmolLM2
  GGUF; only for the default SmolLM2 model). The store is off for the other sources.

Prints the ratio MTTR / cold start (target ≤ 1.5×). Default model: SmolLM2-135M-Instruct
converted from the offline GGUF (cached under .cache/), 270 MB of bf16 weights.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from llm_supervisor.model_server.weights.manifest import (  # noqa: E402
    MANIFEST_NAME,
    read_manifest,
    verify_model_dir,
    write_manifest,
)
from tests.daemon_harness import Daemon, free_port  # noqa: E402  (tests/: reused, not copied)
from tests.model_fixtures import FakeHub, build_tiny_model  # noqa: E402

UNIT = "model-service"
REPO_ID = "bench/model"


def unit_text() -> str:
    return """[Service]
ExecStart=${PYTHON} -m llm_supervisor.model_server
Environment=USE_INT8=false VERIFY_MODEL=sha256 LOG_FORMAT=json HOST=127.0.0.1
Environment=TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=0.2
RestartMaxDelaySec=1
[Health]
Check=http://127.0.0.1:${MODEL_SERVICE_PORT}/api/health
Interval=0.2
Timeout=2
Retries=3
StartPeriod=300
[Install]
WantedBy=stack.target
"""


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def wait_healthy(daemon: Daemon, not_pid: int | None = None, timeout: float = 300) -> float:
    """Poll status every 10 ms; the wall-clock time the unit was first seen healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unit = daemon.unit(UNIT)
        if unit["state"] == "failed":
            raise SystemExit(f"{UNIT} failed: {unit['reason']}")
        if (unit["state"] == "running" and unit["health"] == "healthy"
                and (not_pid is None or unit["pid"] != not_pid)):
            return time.time()
        time.sleep(0.01)
    raise SystemExit(f"{UNIT} not healthy within {timeout}s: {daemon.unit(UNIT)}")


def wait_store(daemon: Daemon, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.get("event") == "model_repair_store_filled" for e in daemon.events()):
        if time.monotonic() > deadline:
            raise SystemExit("the repair store was not filled")
        time.sleep(0.1)


def cold_start(daemon: Daemon) -> float:
    daemon.client.post(f"/units/{UNIT}/stop")
    daemon.wait_state(UNIT, "inactive", timeout=60)
    started = time.time()
    daemon.client.post(f"/units/{UNIT}/start")
    return wait_healthy(daemon) - started


def damage(model: Path, how: str) -> None:
    weights = model / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        if how == "truncated":
            fh.truncate(size // 2)
        else:
            fh.seek(size // 2)
            chunk = fh.read(64)
            fh.seek(size // 2)
            fh.write(bytes(b ^ 0xFF for b in chunk))


def repair_once(daemon: Daemon, model: Path, how: str) -> dict[str, float]:
    unit = daemon.unit(UNIT)
    seen = len(daemon.events())
    damage(model, how)
    killed = time.time()
    os.kill(unit["pid"], signal.SIGKILL)
    healthy = wait_healthy(daemon, not_pid=unit["pid"])
    new = daemon.events()[seen:]
    detected = [ts(e) for e in new if e.get("event") == "model_damage_detected"]
    finished = [e for e in new if e.get("event") == "model_repair_finished"]
    if not detected or not finished or not finished[-1]["ok"]:
        raise SystemExit(f"no successful repair seen: {finished}")
    problems = verify_model_dir(model)
    if problems:
        raise SystemExit(f"repaired model does not match its manifest: {problems}")
    return {"mttr": healthy - detected[0], "kill_to_healthy": healthy - killed,
            "repair": ts(finished[-1]) - detected[0]}


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, str], FakeHub | None]:
    """A writable model copy with a manifest naming the chosen source, and the environment."""
    model = work / "model"
    if args.tiny:
        build_tiny_model(model)
    else:
        from bench_model_server import default_model

        shutil.copytree(args.model or default_model(), model)
    env = {"MODEL_PATH": str(model), "MODEL_SERVICE_PORT": str(free_port()),
           "HF_HOME": str(work / "hf-home"), "HF_HUB_OFFLINE": "0", "MODEL_ID": REPO_ID,
           "MODEL_REPAIR_STORE": "off"}
    if args.source == "store":
        env.update(HF_HUB_OFFLINE="1", MODEL_REPAIR_STORE=str(work / "store"))
        return model, env, None
    if args.source == "gguf":
        if (read_manifest(model) or {}).get("source", {}).get("kind") != "gguf":
            raise SystemExit("--source gguf needs the default (GGUF-converted) SmolLM2 model")
        env["HF_HUB_OFFLINE"] = "1"
        return model, env, None
    repo = work / "hub-repo"
    repo.mkdir()
    for f in model.iterdir():
        if f.is_file() and f.name != MANIFEST_NAME:
            shutil.copy(f, repo / f.name)
    hub = FakeHub({REPO_ID: repo})
    write_manifest(model, {"kind": "hub", "repo_id": REPO_ID, "revision": FakeHub.SHA,
                           "endpoint": hub.url})
    if args.source == "hub":
        env["HF_ENDPOINT"] = hub.url
        return model, env, hub
    from huggingface_hub import hf_hub_download  # --source cache: fill it, then go offline

    for f in repo.iterdir():
        hf_hub_download(REPO_ID, f.name, cache_dir=work / "hf-home" / "hub", endpoint=hub.url)
    hub.close()
    env["HF_HUB_OFFLINE"] = "1"
    return model, env, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (copied; default SmolLM2)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random test model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", choices=("hub", "cache", "store", "gguf"), default="hub")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-repair-") as tmp:
        work = Path(tmp)
        model, env, hub = prepare(args, work)
        daemon = Daemon(work / "daemon", env=env)
        daemon.write_unit("stack.target", "[Unit]\nDescription=bench\n")
        daemon.write_unit(f"{UNIT}.service", unit_text())
        daemon.start()
        try:
            wait_healthy(daemon)
            if args.source == "store":
                wait_store(daemon)
            size = sum(f.stat().st_size for f in model.iterdir() if f.is_file()) / 1e6
            print(f"model {model.name}: {size:.1f} MB; repair source: {args.source}; "
                  f"repeats: {args.repeats}", flush=True)
            colds, results = [], {"truncated": [], "bytes-flipped": []}
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                colds.append(cold_start(daemon))
                for how in results:
                    wait_healthy(daemon)
                    results[how].append(repair_once(daemon, model, how))
        finally:
            daemon.stop()
            if hub is not None:
                hub.close()

    cold = statistics.mean(colds)
    print(f"cold start (start -> healthy):        mean {cold:6.2f} s  "
          f"[{', '.join(f'{c:.2f}' for c in colds)}]")
    all_mttr = []
    for how, runs in results.items():
        mttr = [r["mttr"] for r in runs]
        all_mttr += mttr
        print(f"MTTR {how:<14} (detected -> healthy): mean {statistics.mean(mttr):6.2f} s  "
              f"[{', '.join(f'{m:.2f}' for m in mttr)}]; repair itself "
              f"{statistics.mean(r['repair'] for r in runs):.2f} s; kill -> healthy "
              f"{statistics.mean(r['kill_to_healthy'] for r in runs):.2f} s")
    ratio = statistics.mean(all_mttr) / cold
    print(f"MTTR / cold start = {ratio:.2f}x  (target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
