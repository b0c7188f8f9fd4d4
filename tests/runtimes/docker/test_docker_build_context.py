"""The build context the daemon sends for every shipped Dockerfile (no engine needed).

The SDK does not add the Dockerfile back when the ignore file excludes it (``*`` then ``!``
lines); the docker CLI does. Without it the engine answers "Cannot locate specified Dockerfile".
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from llm_supervisor.runtimes.docker.build import (
    HOST_WHEELS_DIR,
    BuildPlan,
    build_digest,
    context_files,
    plan_path,
    write_context,
)
from llm_supervisor.units.loader import load_directory

REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted(p for p in (REPO_ROOT / "packaging" / "docker").glob("*/Dockerfile*")
                 if not p.name.endswith(".dockerignore"))


def shipped_plan(dockerfile: Path) -> BuildPlan:
    """The project root is the context when an ignore file next to the Dockerfile exists
    (those images install this package), else the Dockerfile's directory."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    context = REPO_ROOT if ignore.exists() else dockerfile.parent
    return plan_path(context, str(dockerfile.relative_to(context)), "t:1", "base:1")


@pytest.mark.parametrize("dockerfile", SHIPPED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_context_contains_the_dockerfile_and_only_what_is_allowed(dockerfile: Path) -> None:
    plan = shipped_plan(dockerfile)
    buffer = io.BytesIO()
    write_context(plan, buffer)
    with tarfile.open(fileobj=buffer) as tar:
        names = set(tar.getnames())
    assert plan.dockerfile in names, "the Dockerfile must be in the context"
    if plan.context == REPO_ROOT:
        assert str(plan.ignore_file.relative_to(REPO_ROOT)) in names  # type: ignore[union-attr]
        assert not any(n.startswith((".venv/", ".git/", "tests/")) for n in names)
        # An image that installs this package gets it; the gateway's only needs its wheels.
        if any("llm_supervisor" in line for line in dockerfile.read_text().splitlines()
               if not line.lstrip().startswith("#")):
            assert "src/llm_supervisor/__init__.py" in names
        assert not any("__pycache__" in n for n in names)


def test_every_copied_path_is_in_the_context() -> None:
    """COPY sources of each shipped Dockerfile exist in its context (after the ignore file)."""
    for dockerfile in SHIPPED:
        plan = shipped_plan(dockerfile)
        files = context_files(plan)
        for line in dockerfile.read_text().splitlines():
            words = line.split()
            if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
                continue
            for source in words[1:-1]:
                if source.startswith(HOST_WHEELS_DIR) or source == "\\":
                    continue  # added by the daemon (with_host_wheels)
                source = source.rstrip("*")
                assert any(f == source or f.startswith(source.rstrip("/") + "/")
                           or f.startswith(source) for f in files), \
                    f"{dockerfile.name}: COPY {source} is not in the context"


def test_added_directory_and_digest(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY .host-wheels/ /w/\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("*\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"x")
    plan = plan_path(tmp_path, "Dockerfile", "t:1", None)
    assert plan.wants_host_wheels and not plan.declares_base_image
    with_wheels = BuildPlan(plan.context, plan.dockerfile, plan.ignore_file, {}, "t:1",
                            {HOST_WHEELS_DIR: wheels})
    buffer = io.BytesIO()
    write_context(with_wheels, buffer)
    with tarfile.open(fileobj=buffer) as tar:
        names = tar.getnames()
    assert names == ["Dockerfile", "Dockerfile.dockerignore", ".host-wheels",
                     ".host-wheels/a-1-py3-none-any.whl"]
    first = build_digest(with_wheels, "sha256:1")
    assert build_digest(with_wheels, "sha256:2") != first, "a new base image rebuilds"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY .host-wheels/ /w/\nUSER 1\n")
    assert build_digest(with_wheels, "sha256:1") != first, "an edited Dockerfile rebuilds"


def test_units_build_shipped_dockerfiles() -> None:
    """Every shipped Dockerfile but the CUDA one is built by a shipped unit, and no unit names
    one that is not shipped."""
    from llm_supervisor.config import load_settings

    loaded = load_directory(REPO_ROOT / "units", load_settings().expansion_vars())
    assert "gateway.service" in loaded.units, loaded.errors
    used = {u.name: (REPO_ROOT / (u.container.build or ".") / (u.container.dockerfile or "Dockerfile"))
            .resolve() for u in loaded.units.values() if u.container and u.container.build}
    assert {"model-service.service", "gateway.service", "novnc-container.service",
            "browser-container.service"} <= set(used)
    assert set(used.values()) == {p.resolve() for p in SHIPPED if p.suffix != ".cuda"}
