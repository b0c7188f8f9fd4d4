"""A package, not a checkout: the shipped units and the test page are package data. A wheel
built from the source and installed into a bare directory finds them from any working directory
(importlib.resources), and ``llm-supervisorctl verify`` passes on the packaged units."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_supervisor.config.paths import default_units_dir
from tests.daemon_harness import PROJECT_DIR


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed from its wheel into a directory of its own (``--no-deps``: the
    dependencies come from this venv)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "package"  # what the Docker image copies: no build/ or egg-info races here
    shutil.copytree(PROJECT_DIR / "src" / "llm_supervisor", source / "src" / "llm_supervisor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_DIR / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(root / "dist"), str(source)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = (root / "dist").glob("llm_supervisord-*.whl")
    site = root / "site"
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return site


def _run(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_SUPERVISOR_")}
    env.update(PYTHONPATH=str(site), LLM_SUPERVISOR_CONFIG=str(cwd / "none.toml"))
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_installed_wheel_finds_units_and_test_page(installed: Path, tmp_path: Path) -> None:
    probe = _run(installed, tmp_path, "-c", """if True:
        import json, llm_supervisor
        from llm_supervisor.config.paths import default_units_dir
        from llm_supervisor.data import test_page
        print(json.dumps({"package": llm_supervisor.__file__,
                          "units": sorted(p.name for p in default_units_dir().iterdir()),
                          "units_dir": str(default_units_dir()), "page": test_page()}))""")
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["package"].startswith(str(installed)) and \
        found["units_dir"].startswith(str(installed))
    shipped = sorted(p.name for p in default_units_dir().iterdir())
    assert found["units"] == shipped and "stack.target" in shipped and len(shipped) >= 8
    assert found["page"] == (PROJECT_DIR / "src/llm_supervisor/data/web/test_llm.html").read_text()

    verify = _run(installed, tmp_path, "-m", "llm_supervisor.cli.ctl", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{len(shipped)} unit file(s) checked, 0 problem(s)" in verify.stdout


def test_checkout_paths_point_at_the_one_copy() -> None:
    """``units/`` and ``packaging/web/test_llm.html`` still work in a checkout, as links to the
    package data (no second copy to drift)."""
    assert (PROJECT_DIR / "units").is_symlink()
    assert (PROJECT_DIR / "units").resolve() == default_units_dir().resolve()
    page = PROJECT_DIR / "packaging" / "web" / "test_llm.html"
    assert page.is_symlink()
    assert page.resolve() == (PROJECT_DIR / "src/llm_supervisor/data/web/test_llm.html").resolve()


def test_dockerfiles_copy_only_what_exists() -> None:
    """Every ``COPY`` source of the images built from the project root exists (a moved file
    would otherwise break the image build only where Docker runs)."""
    for dockerfile in sorted((PROJECT_DIR / "packaging" / "docker").glob("*/Dockerfile*")):
        if dockerfile.suffix == ".dockerignore":
            continue
        for line in dockerfile.read_text().splitlines():
            match = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
            if not match:
                continue
            for source in match.group(1).split():
                if source.startswith("--") or "*" in source or source.startswith(".host-wheels"):
                    continue
                context = PROJECT_DIR if (PROJECT_DIR / source).exists() else dockerfile.parent
                assert (context / source).exists(), f"{dockerfile}: COPY {source}"
