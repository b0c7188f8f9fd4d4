"""Files shipped inside the package, read with :mod:`importlib.resources` so a wheel installed
anywhere (or a Docker image) finds them:

- ``units/``: the shipped unit files (the default units directory). In a checkout, ``units/``
  at the repository root is a symbolic link to this directory: one copy, two paths.
- ``models/``: the shipped model catalog (``NAME.model``), read with the user's ``MODELS_DIR``.
- ``web/test_llm.html``: the test page the model service serves at ``/`` (in a checkout also
  reachable as ``packaging/web/test_llm.html``, a link to this file).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_units_dir() -> Path:
    """The directory of the shipped unit files (a real directory: wheels install unzipped)."""
    return Path(str(resources.files(__name__) / "units"))


def shipped_models_dir() -> Path:
    """The shipped model catalog (``NAME.model`` files; docs/models.md)."""
    return Path(str(resources.files(__name__) / "models"))


def test_page() -> str:
    """The HTML of the test page."""
    return (resources.files(__name__) / "web" / "test_llm.html").read_text(encoding="utf-8")
