"""BROWSER=auto|chromium|firefox: which program the browser unit runs, with real programs on
a PATH made for the test (links to the installed browsers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llm_supervisor.config.settings import load_settings


def _path_with(tmp_path: Path, *programs: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in programs:
        real = shutil.which(program)
        if real is None:
            pytest.skip(f"{program} not installed: sudo apt-get install {program}")
        (bin_dir / program).symlink_to(real)
    return str(bin_dir)


@pytest.mark.parametrize(("installed", "setting", "expected"), [
    (("chromium", "firefox-esr"), "auto", "firefox-esr"),  # the runbook's browser first
    (("chromium",), "auto", "chromium"),
    (("firefox-esr",), "auto", "firefox-esr"),
    (("chromium", "firefox-esr"), "firefox", "firefox-esr"),
    (("firefox-esr",), "chromium", "chromium"),  # asked for: the unit says it is missing
    ((), "auto", "firefox-esr"),  # none: the unit's condition names what set-up installs
])
def test_browser_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         installed: tuple[str, ...], setting: str, expected: str) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, *installed))
    monkeypatch.setenv("BROWSER", setting)
    settings = load_settings()
    assert settings.resolved_browser_program == expected
    assert settings.expansion_vars()["BROWSER_PROGRAM"] == expected
