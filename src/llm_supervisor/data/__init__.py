"""Files shipped inside the package, found next to this file so a wheel installed anywhere (or a
Docker image) finds them (wheels install unzipped; not :mod:`importlib.resources`, whose import
was a tenth of ``llm-supervisorctl status``'s start-up):

- ``units/``: the shipped unit files (the default units directory). In a checkout, ``units/``
  at the repository root is a symbolic link to this directory: one copy, two paths.
- ``models/``: the shipped model catalog (``NAME.model``), read with the user's ``MODELS_DIR``.
- ``web/test_llm.html``: the test page the model service serves at ``/`` (in a checkout also
  reachable as ``packaging/web/test_llm.html``, a link to this file).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def shipped_units_dir() -> Path:
    """The directory of the shipped unit files (a real directory: wheels install unzipped)."""
    return HERE / "units"


def shipped_models_dir() -> Path:
    """The shipped model catalog (``NAME.model`` files; docs/models.md)."""
    return HERE / "models"


def test_page() -> str:
    """The HTML of the test page."""
    return (HERE / "web" / "test_llm.html").read_text(encoding="utf-8")
