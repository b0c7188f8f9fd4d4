"""Building a unit's image from ``[Container] Build=`` without a registry in reach.

The build context is sent as a tar we make ourselves so that an ignore file next to the
Dockerfile (``Dockerfile.dockerignore``, BuildKit's convention) applies even when the context is
the whole project. ``BASE_IMAGE`` is passed as a build arg when configured, so every Dockerfile we
ship can be built from a local image (``FROM ${BASE_IMAGE}``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_supervisor.supervisor.runtimes.base import RuntimeError_
from llm_supervisor.supervisor.units import Unit


@dataclass(frozen=True)
class BuildPlan:
    context: Path
    dockerfile: str  # relative to the context, as the engine wants it
    ignore_file: Path | None
    buildargs: dict[str, str]
    tag: str


def plan_build(unit: Unit, project_dir: Path, tag: str, base_image: str | None) -> BuildPlan:
    """Resolve Build= (relative to the project dir) and Dockerfile= (relative to the context)."""
    spec = unit.container
    assert spec is not None and spec.build is not None
    context = Path(os.path.expanduser(spec.build))
    if not context.is_absolute():
        context = project_dir / context
    context = context.resolve()
    if not context.is_dir():
        raise RuntimeError_(f"[Container] Build={spec.build}: {context} is not a directory")
    dockerfile = spec.dockerfile or "Dockerfile"
    dockerfile_path = Path(dockerfile) if os.path.isabs(dockerfile) else context / dockerfile
    if not dockerfile_path.is_file():
        raise RuntimeError_(f"[Container] Dockerfile={dockerfile}: {dockerfile_path} not found")
    try:
        relative = dockerfile_path.resolve().relative_to(context)
    except ValueError:
        raise RuntimeError_(f"[Container] Dockerfile={dockerfile} must be inside the build "
                            f"context {context}") from None
    ignore = dockerfile_path.with_name(dockerfile_path.name + ".dockerignore")
    if not ignore.is_file():
        ignore = context / ".dockerignore"
    buildargs = {"BASE_IMAGE": base_image} if base_image else {}
    buildargs.update(spec.build_args)
    return BuildPlan(context, str(relative), ignore if ignore.is_file() else None, buildargs, tag)


def _ignore_patterns(path: Path | None) -> list[str]:
    if path is None:
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_image(client: Any, plan: BuildPlan, labels: Mapping[str, str],
                output: Callable[[str], None]) -> str:
    """Build (blocking; run it in a thread) and return the image id. ``output`` gets the build
    log line by line."""
    from docker.errors import APIError, DockerException
    from docker.utils.build import tar

    context_tar = tar(str(plan.context), exclude=_ignore_patterns(plan.ignore_file), gzip=True)
    image_id: str | None = None
    try:
        stream = client.api.build(
            fileobj=context_tar, custom_context=True, encoding="gzip", dockerfile=plan.dockerfile,
            tag=plan.tag, buildargs=plan.buildargs, labels=dict(labels), rm=True, forcerm=True,
            pull=False, decode=True)
        for chunk in stream:
            if "stream" in chunk:
                text = str(chunk["stream"]).rstrip("\n")
                if text:
                    output(text)
            if "error" in chunk:
                raise RuntimeError_(_build_failure(plan, str(chunk["error"]).strip()))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except (APIError, DockerException) as exc:
        raise RuntimeError_(_build_failure(plan, str(exc))) from exc
    finally:
        context_tar.close()
    if image_id is None:
        image_id = client.images.get(plan.tag).id
    return image_id


def _build_failure(plan: BuildPlan, message: str) -> str:
    where = f"`docker build -f {plan.context / plan.dockerfile} {plan.context}`"
    lowered = message.lower()
    if any(s in lowered for s in ("pull access denied", "registry", "no such host",
                                  "manifest unknown", "not found: manifest", "dial tcp")):
        base = plan.buildargs.get("BASE_IMAGE", "the Dockerfile's default")
        return (f"image build failed: its base image ({base}) is not available locally and no "
                f"registry answers ({message}); set BASE_IMAGE to a local image (`docker images`) "
                f"via [vars] BASE_IMAGE in the config or BuildArg=BASE_IMAGE=..., then retry ({where})")
    return f"image build failed: {message} ({where})"
