"""``llm-supervisorctl images build``: every image of the stack, from a local Debian base.

The same build path as the daemon's (:func:`docker_build.build_if_changed`), the same tags and
labels (``llm-supervisord/<unit>:<owner>``), so the daemon's next start reuses what this built.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_supervisor.runtimes.docker import labels
from llm_supervisor.runtimes.docker.base_image import resolve_base
from llm_supervisor.runtimes.docker.build import BuildPlan, build_if_changed, plan_build, plan_path
from llm_supervisor.units.model import Unit


@dataclass(frozen=True)
class BuiltImage:
    unit: str
    tag: str
    image_id: str
    built: bool
    seconds: float


def image_tag(unit: Unit, owner: str) -> str:
    assert unit.container is not None
    return unit.container.image or labels.image_tag(unit, owner)


def build_unit_image(client: Any, unit: Unit, owner: str, project_dir: Path,
                     base_image: str | None, output: Callable[[str], None]) -> BuiltImage:
    started = time.monotonic()
    plan = plan_build(unit, project_dir, image_tag(unit, owner), base_image)
    plan = resolve_base(client, plan, base_image, output)
    image_id, built = build_if_changed(client, plan, labels.for_object(owner, unit.name), output)
    return BuiltImage(unit.name, plan.tag, image_id, built, time.monotonic() - started)


def buildable_units(units: dict[str, Unit]) -> list[Unit]:
    return sorted((u for u in units.values() if u.container is not None and u.container.build),
                  key=lambda u: u.name)


def standalone_dockerfiles(units: dict[str, Unit], project_dir: Path) -> list[Path]:
    """Shipped Dockerfiles no unit builds (the desktop images, run by units of your own; see
    docs/docker.md), except the CUDA one (it needs an NVIDIA base image)."""
    used = set()
    for unit in buildable_units(units):
        spec = unit.container
        assert spec is not None and spec.build is not None
        context = Path(spec.build) if Path(spec.build).is_absolute() else project_dir / spec.build
        used.add((context / (spec.dockerfile or "Dockerfile")).resolve())
    shipped = sorted((project_dir / "packaging" / "docker").glob("*/Dockerfile"))
    return [p for p in shipped if p.resolve() not in used]


def standalone_plan(dockerfile: Path, project_dir: Path, owner: str,
                    base_image: str | None) -> BuildPlan:
    """Context: the project root when an ignore file lies next to the Dockerfile (the image
    installs this package), else the Dockerfile's directory."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    context = project_dir if ignore.exists() else dockerfile.parent
    tag = f"{labels.IMAGE_PREFIX}{dockerfile.parent.name}:{owner[:6]}"
    return plan_path(context, str(dockerfile.relative_to(context)), tag, base_image)


def build_stack(client: Any, units: dict[str, Unit], owner: str, project_dir: Path,
                base_image: str | None, output: Callable[[str], None],
                standalone: bool = True) -> list[BuiltImage]:
    results = []
    todo: list[Unit | Path] = [*buildable_units(units)]
    if standalone:
        todo += standalone_dockerfiles(units, project_dir)
    for index, item in enumerate(todo, 1):
        name = item.name if isinstance(item, Unit) else f"{item.parent.name} image"
        output(f"[{index}/{len(todo)}] {name}")
        if isinstance(item, Unit):
            last = build_unit_image(client, item, owner, project_dir, base_image, output)
        else:
            started = time.monotonic()
            plan = resolve_base(client, standalone_plan(item, project_dir, owner, base_image),
                                base_image, output)
            image_id, built = build_if_changed(
                client, plan, labels.for_object(owner, f"{item.parent.name}.image"), output)
            last = BuiltImage(name, plan.tag, image_id, built, time.monotonic() - started)
        results.append(last)
        output(f"[{index}/{len(todo)}] {name}: {last.tag} "
               f"{'built' if last.built else 'up to date'} in {last.seconds:.1f} s")
    return results
