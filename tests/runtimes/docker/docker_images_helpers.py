"""Building the shipped Dockerfiles in tests, as the daemon does (shared by the image tests)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from llm_supervisor.runtimes.docker.base_image import ensure_base_image
from llm_supervisor.runtimes.docker.build import BuildPlan, build_if_changed, plan_path
from llm_supervisor.runtimes.docker.stack_images import resolve_base

REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_PREFIX = "llm-supervisord-test/"
TIMINGS: dict[str, float] = {}


def shipped_dockerfiles() -> list[Path]:
    return sorted(p for p in (REPO_ROOT / "packaging" / "docker").glob("*/Dockerfile*")
                  if not p.name.endswith(".dockerignore"))


def shipped_plan(dockerfile: Path, tag: str = "t:1", base: str | None = None) -> BuildPlan:
    """The project root is the context when an ignore file next to the Dockerfile exists
    (those images install this package), else the Dockerfile's directory."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    context = REPO_ROOT if ignore.exists() else dockerfile.parent
    return plan_path(context, str(dockerfile.relative_to(context)), tag, base)


def image_name(dockerfile: Path) -> str:
    return dockerfile.parent.name


def build_shipped(client: Any) -> dict[str, str]:
    """{image name: tag} for every buildable shipped Dockerfile (the CUDA one needs an NVIDIA
    base and GBs of CUDA wheels: its context is checked in test_docker_build_context.py)."""
    def output(line: str) -> None:
        if not line.startswith((" ---> ", "Removing intermediate")):
            sys.stderr.write(f"  {line}\n")

    started = time.monotonic()
    ensure_base_image(client, output)
    TIMINGS["base"] = time.monotonic() - started
    tags = {}
    for dockerfile in shipped_dockerfiles():
        if dockerfile.name.endswith(".cuda"):
            continue
        name = image_name(dockerfile)
        tag = f"{TEST_PREFIX}{name}:shipped"
        plan = resolve_base(client, shipped_plan(dockerfile, tag), None, output)
        began = time.monotonic()
        build_if_changed(client, plan, {"llm-supervisord.project": "llm-supervisord-test"}, output)
        TIMINGS[name] = time.monotonic() - began
        tags[name] = tag
    sys.stderr.write(f"shipped images ready: {TIMINGS}\n")
    return tags
