"""The shipped model-service and gateway units in a temporary state dir, for the CLI tests
(ports from free_port, the offline SmolLM2 GGUF on llama.cpp: ready in a few seconds)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import PROJECT_DIR, Daemon, free_port

UNITS_DIR = PROJECT_DIR / "units"


class StackDaemon(Daemon):
    """A harness daemon on shipped unit files, isolated from the caller's settings."""

    def __init__(self, root: Path, units: list[str], env: dict[str, str]):
        no_config = root / "no-config.toml"
        root.mkdir(parents=True, exist_ok=True)
        no_config.write_text("")
        super().__init__(root, {"LLM_SUPERVISOR_CONFIG": str(no_config), **env})
        for name in units:
            shutil.copy(UNITS_DIR / name, self.units_dir / name)

    def inherited_env(self) -> dict[str, str]:
        return {k: v for k, v in super().inherited_env().items()
                if not k.startswith(("LLM_SUPERVISOR_", "MODEL_", "HF_", "GATEWAY_",
                                     "DASHBOARD_", "NOVNC_"))}

    def cli(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``llm-supervisord ARGV`` (the background daemon, as a user runs it)."""
        return subprocess.run([sys.executable, "-m", "llm_supervisor.cli.daemon_cli", *argv],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=PROJECT_DIR)


def stack_env(model_dir: Path) -> dict[str, str]:
    return {
        "GATEWAY_PROGRAM": "caddy",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_ADMIN_PORT": str(free_port()),
        "MODEL_SERVICE_PORT": str(free_port()),
        "DASHBOARD_PORT": str(free_port()),
        "MODEL_PATH": str(model_dir),
        "ENGINE": "llama.cpp",
        "HF_HUB_OFFLINE": "1",
        "HOST": "127.0.0.1",
    }
