"""Building a unit's image from ``[Container] Build=`` without a registry in reach.

The build context is sent as a tar we make ourselves so that an ignore file next to the
Dockerfile (``Dockerfile.dockerignore``, BuildKit's convention) applies even when the context is
the whole project. Like the docker CLI, the Dockerfile and the ignore file are always sent, even
when the ignore file excludes them (``*`` then ``!`` lines): the engine reads the Dockerfile from
the context, and without it the build fails with "Cannot locate specified Dockerfile".

``BASE_IMAGE`` is passed as a build arg when configured, so every Dockerfile we ship can be built
from a local image (``FROM ${BASE_IMAGE}``). A Dockerfile that mentions ``.host-wheels/`` gets
the host's Python wheels for the project's dependencies in its context under that name
(:mod:`llm_supervisor.runtimes.docker.wheelhouse`): pip inside a build sees neither the host's pip
configuration nor its local wheel files nor its cache of wheels it compiled.
"""

from __future__ import annotations

import contextlib
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from llm_supervisor.core.disk_space import shortfall
from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker.wheelhouse import ensure_wheelhouse
from llm_supervisor.units.model import Unit

HOST_WHEELS_DIR = ".host-wheels"


@dataclass(frozen=True)
class BuildPlan:
    context: Path
    dockerfile: str  # relative to the context, as the engine wants it
    ignore_file: Path | None
    buildargs: dict[str, str]
    tag: str
    # Directories of this machine added to the context: name in the context -> host directory.
    extra_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def dockerfile_path(self) -> Path:
        return self.context / self.dockerfile

    def dockerfile_text(self) -> str:
        return self.dockerfile_path.read_text(errors="replace")

    @property
    def wants_host_wheels(self) -> bool:
        return HOST_WHEELS_DIR + "/" in self.dockerfile_text()

    @property
    def declares_base_image(self) -> bool:
        return re.search(r"^\s*ARG\s+BASE_IMAGE\b", self.dockerfile_text(), re.M) is not None


def plan_path(context: Path, dockerfile: str, tag: str, base_image: str | None,
              build_args: Mapping[str, str] | None = None) -> BuildPlan:
    """A plan for an absolute context directory and a Dockerfile relative to it (or absolute,
    inside it)."""
    context = context.resolve()
    if not context.is_dir():
        raise RuntimeError_(f"[Container] Build={context} is not a directory")
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
    buildargs.update(build_args or {})
    return BuildPlan(context, str(relative), ignore if ignore.is_file() else None, buildargs, tag)


def plan_build(unit: Unit, project_dir: Path, tag: str, base_image: str | None) -> BuildPlan:
    """Resolve Build= (relative to the project dir) and Dockerfile= (relative to the context)."""
    spec = unit.container
    assert spec is not None and spec.build is not None
    context = Path(os.path.expanduser(spec.build))
    if not context.is_absolute():
        context = project_dir / context
    if not context.resolve().is_dir():
        raise RuntimeError_(f"[Container] Build={spec.build}: {context.resolve()} is not a "
                            "directory")
    return plan_path(context, spec.dockerfile or "Dockerfile", tag, base_image, spec.build_args)


def _ignore_patterns(path: Path | None) -> list[str]:
    if path is None:
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(plan: BuildPlan) -> list[str]:
    """The context's files (relative paths) after the ignore file, plus the Dockerfile and the
    ignore file themselves, whatever the ignore file says (as the docker CLI does)."""
    from docker.utils.build import exclude_paths

    # exclude_paths adds `!<dockerfile>` itself; it walks into excluded directories only where an
    # exception pattern may match below them.
    files = set(exclude_paths(str(plan.context), _ignore_patterns(plan.ignore_file),
                              dockerfile=plan.dockerfile))
    files.add(plan.dockerfile)
    if plan.ignore_file is not None:
        with contextlib.suppress(ValueError):  # a root .dockerignore outside: not sent
            files.add(str(plan.ignore_file.resolve().relative_to(plan.context)))
    return sorted(files)


def write_context(plan: BuildPlan, fileobj: IO[bytes]) -> None:
    """The context as an uncompressed tar (sent over the local socket; wheels are compressed
    already)."""
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for name in context_files(plan):
            tar.add(str(plan.context / name), arcname=name, recursive=False)
        for arcname, directory in plan.extra_dirs.items():
            info = tarfile.TarInfo(arcname)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            for path in sorted(directory.iterdir()):
                if path.is_file():
                    tar.add(str(path), arcname=f"{arcname}/{path.name}", recursive=False)
    fileobj.seek(0)


def with_host_wheels(plan: BuildPlan, output: Callable[[str], None]) -> BuildPlan:
    """The plan with ``.host-wheels/`` in its context when its Dockerfile asks for it."""
    if not plan.wants_host_wheels or HOST_WHEELS_DIR in plan.extra_dirs:
        return plan

    wheels = ensure_wheelhouse(plan.context, output)
    return BuildPlan(plan.context, plan.dockerfile, plan.ignore_file, plan.buildargs, plan.tag,
                     {**plan.extra_dirs, HOST_WHEELS_DIR: wheels})


def build_image(client: Any, plan: BuildPlan, labels: Mapping[str, str],
                output: Callable[[str], None]) -> str:
    """Build (blocking; run it in a thread) and return the image id. ``output`` gets the build
    log line by line."""
    from docker.errors import APIError, DockerException

    plan = with_host_wheels(plan, output)
    image_id: str | None = None
    step = ""
    recent: list[str] = []
    with tempfile.TemporaryFile(prefix="llm-supervisord-context-") as context_tar:
        write_context(plan, context_tar)
        _check_space(client, context_tar.tell())
        try:
            stream = client.api.build(
                fileobj=context_tar, custom_context=True, dockerfile=plan.dockerfile,
                tag=plan.tag, buildargs=plan.buildargs, labels=dict(labels), rm=True,
                forcerm=True, pull=False, decode=True)
            for chunk in stream:
                if "stream" in chunk:
                    for text in str(chunk["stream"]).splitlines():
                        if text.strip():
                            output(text)
                            if text.startswith("Step "):
                                step, recent = text, []
                            else:
                                recent = [*recent[-30:], text]
                if "error" in chunk:
                    raise RuntimeError_(_build_failure(plan, str(chunk["error"]).strip(), step,
                                                       recent))
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
        except (APIError, DockerException) as exc:
            raise RuntimeError_(_build_failure(plan, str(exc), step, recent)) from exc
    if image_id is None:
        image_id = client.images.get(plan.tag).id
    return image_id


BUILD_HEADROOM = 512 << 20  # layers beyond the context: packages installed, caches


def _check_space(client: Any, context_bytes: int) -> None:
    """Before a build: the engine's storage must hold the context twice and the new layers."""
    try:
        root = str(client.info().get("DockerRootDir") or "")
    except Exception:  # an engine that does not say: the build finds out itself
        return
    if not root or not os.path.isdir(root):  # a remote engine: not ours to measure
        return
    missing = shortfall(root, 2 * context_bytes + BUILD_HEADROOM, "building the image")
    if missing:
        raise RuntimeError_(missing)


# What apt-get and pip print when they cannot reach their registry.
_UNREACHABLE = ("temporary failure resolving", "could not resolve", "failed to fetch",
                "unable to connect to", "connection timed out", "network is unreachable",
                "newconnectionerror", "connection refused", "name or service not known",
                "could not fetch url", "no matching distribution found",
                "failed to establish a new connection", "max retries exceeded")


def _build_failure(plan: BuildPlan, message: str, step: str = "",
                   recent: list[str] | None = None) -> str:
    where = f"`docker build -f {plan.context / plan.dockerfile} {plan.context}`"
    lowered = message.lower()
    if any(s in lowered for s in ("pull access denied", "no such host", "manifest unknown",
                                  "not found: manifest", "registry-1.docker.io")):
        base = plan.buildargs.get("BASE_IMAGE", "the Dockerfile's default")
        return (f"image build failed: its base image ({base}) is not available locally and no "
                f"registry answers ({message}); run `llm-supervisorctl images build` (it makes a "
                f"local Debian base), or set BASE_IMAGE to a local image (`docker images`) via "
                f"[vars] BASE_IMAGE in the config or BuildArg=BASE_IMAGE=..., then retry ({where})")
    context = "\n".join(recent or [])
    if step and any(s in context.lower() for s in _UNREACHABLE):
        evidence = next(line for line in reversed(recent or [])
                        if any(s in line.lower() for s in _UNREACHABLE))
        return (f"image build failed at {step.strip()}: a package registry (Debian apt or PyPI) "
                f"did not answer ({evidence.strip()}); check this machine's network or proxy, "
                f"then retry ({where})")
    at = f" at {step.strip()}" if step else ""
    return f"image build failed{at}: {message} ({where})"


BUILD_DIGEST = "llm-supervisord.build-digest"


def build_digest(plan: BuildPlan, base_image_id: str | None) -> str:
    """A hash of everything the build reads: the context's files (content), the added
    directories (names, sizes, times), the build args and the base image's id. An image tagged
    with the same digest is reused without building (daemon restarts, tests, `images build`)."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(f"{plan.dockerfile}\0{sorted(plan.buildargs.items())}\0{base_image_id}\0".encode())
    for name in context_files(plan):
        path = plan.context / name
        digest.update(name.encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for arcname, directory in sorted(plan.extra_dirs.items()):
        for path in sorted(directory.iterdir()):
            stat = path.stat()
            digest.update(f"{arcname}/{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


def base_image_id(client: Any, plan: BuildPlan) -> str | None:
    from docker.errors import ImageNotFound

    base = plan.buildargs.get("BASE_IMAGE")
    if not base:
        return None
    try:
        return str(client.images.get(base).id)
    except ImageNotFound:
        return None


def cached_image(client: Any, tag: str, digest: str) -> str | None:
    """The id of the image at ``tag`` when it was built from the same inputs, else None."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    return str(image.id) if (image.labels or {}).get(BUILD_DIGEST) == digest else None


def build_if_changed(client: Any, plan: BuildPlan, labels: Mapping[str, str],
                     output: Callable[[str], None]) -> tuple[str, bool]:
    """(image id, built?): build only when no image at the plan's tag has the same digest."""
    plan = with_host_wheels(plan, output)
    digest = build_digest(plan, base_image_id(client, plan))
    cached = cached_image(client, plan.tag, digest)
    if cached is not None:
        output(f"image {plan.tag} is up to date (inputs unchanged)")
        return cached, False
    output(f"building image {plan.tag} from {plan.context} ({plan.dockerfile})")
    return build_image(client, plan, {**labels, BUILD_DIGEST: digest}, output), True
