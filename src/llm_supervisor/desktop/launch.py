"""Prepare, then ``exec``: the ``ExecStart`` of the xvfb, x11vnc and browser units.

Each command does its preparation in Python (display number, X cookie, password files) and
replaces itself with the real program, so the supervisor watches that program's pid directly and
no secret ever appears on a command line (only file paths do).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_supervisor.config import load_settings
from llm_supervisor.desktop.display import display_answers, free_display, wait_for_display
from llm_supervisor.desktop.secrets_store import (
    DesktopFiles,
    ensure_password,
    write_private,
    write_xauthority,
)

SCREEN = os.environ.get("DESKTOP_SCREEN", "1280x800x24")
EX_UNAVAILABLE = 69  # sysexits.h: a service this one needs is not available


def _files() -> DesktopFiles:
    return DesktopFiles(load_settings().state_dir)


def _exec(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    executable = shutil.which(argv[0])
    if executable is None:
        print(f"desktop: {argv[0]} not found on PATH", file=sys.stderr)
        return EX_UNAVAILABLE
    print(f"desktop: exec {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execve(executable, list(argv), env if env is not None else dict(os.environ))
    return 0  # not reached


def read_display(files: DesktopFiles) -> int | None:
    try:
        return int(files.display.read_text().strip())
    except (OSError, ValueError):
        return None


def _display_env(files: DesktopFiles, timeout: float = 20.0) -> dict[str, str] | None:
    """DISPLAY/XAUTHORITY for a client of our Xvfb, once it answers; None if it does not."""
    number = read_display(files)
    if number is None or not wait_for_display(number, timeout):
        where = f":{number}" if number is not None else "(none recorded)"
        print(f"desktop: X display {where} is not up; is the xvfb unit running?", file=sys.stderr)
        return None
    env = dict(os.environ)
    env["DISPLAY"] = f":{number}"
    env["XAUTHORITY"] = str(files.xauthority)
    return env


def xvfb() -> int:
    """A free display, a fresh cookie, then Xvfb with access control and no TCP listener."""
    files = _files()
    files.ensure_directory()
    number = free_display()
    write_xauthority(files, number)
    files.display.write_text(f"{number}\n")
    return _exec(["Xvfb", f":{number}", "-screen", "0", SCREEN, "-nolisten", "tcp",
                  "-auth", str(files.xauthority)])


def display_ready() -> int:
    """The xvfb unit's health check: 0 once the display it recorded accepts connections (what
    the units After= it, x11vnc and the browser, need before they start)."""
    number = read_display(_files())
    if number is not None and display_answers(number):
        return 0
    where = f":{number}" if number is not None else "(none recorded yet)"
    print(f"X display {where} does not answer yet", file=sys.stderr)
    return 1


def x11vnc() -> int:
    """x11vnc on the display, password from the 0600 -rfbauth file, loopback only."""
    settings = load_settings()
    files = DesktopFiles(settings.state_dir)
    ensure_password(files)
    env = _display_env(files)
    if env is None:
        return EX_UNAVAILABLE
    return _exec(["x11vnc", "-display", env["DISPLAY"], "-auth", str(files.xauthority),
                  "-rfbauth", str(files.rfbauth), "-localhost", "-rfbport", str(settings.vnc_port),
                  "-forever", "-shared", "-norc", "-noipv6", "-noxdamage"], env)


def _screen_size() -> str:
    """``1280x800x24`` → ``1280,800``: there is no window manager to maximise the window."""
    width, height = SCREEN.split("x")[:2]
    return f"{width},{height}"


# Firefox preferences for a kiosk-like test browser: no first-run pages, no telemetry, no
# update or default-browser prompts (user.js is re-applied at every start).
FIREFOX_PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.aboutwelcome.enabled": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
}


def browser_program() -> str:
    """``BROWSER_PROGRAM`` as the daemon resolved it (BROWSER=auto|chromium|firefox), else
    the same choice made here."""
    chosen = os.environ.get("BROWSER_PROGRAM") or os.environ.get("DESKTOP_BROWSER")
    if chosen:
        return chosen
    return load_settings().resolved_browser_program


def _firefox_argv(program: str, profile: os.PathLike[str] | str, url: str) -> list[str]:
    import json

    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});"
             for name, value in FIREFOX_PREFS.items()]
    write_private(Path(profile) / "user.js", ("\n".join(lines) + "\n").encode())
    width, height = _screen_size().split(",")
    return [program, "--no-remote", "--profile", str(profile), "--width", width,
            "--height", height, "--new-window", url]


def browser(url: str) -> int:
    """Chromium or Firefox (ESR) on the display, opening ``url``."""
    files = _files()
    env = _display_env(files)
    if env is None:
        return EX_UNAVAILABLE
    write_private(files.browser_xauthority, files.xauthority.read_bytes())
    env["XAUTHORITY"] = str(files.browser_xauthority)
    profile = files.browser_profile
    profile.mkdir(parents=True, exist_ok=True, mode=0o700)
    program = browser_program()
    if "firefox" in Path(program).name:  # its own profile: the two browsers' files differ
        firefox_profile = profile.with_name(profile.name + "-firefox")
        firefox_profile.mkdir(exist_ok=True, mode=0o700)
        env.setdefault("MOZ_CRASHREPORTER_DISABLE", "1")
        return _exec(_firefox_argv(program, firefox_profile, url), env)
    argv = [program, f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--password-store=basic", "--window-position=0,0", f"--window-size={_screen_size()}"]
    if os.geteuid() == 0:
        # Chromium refuses to run as root with its sandbox; the page is our own test page.
        argv += ["--no-sandbox", "--test-type"]
    return _exec([*argv, url], env)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["xvfb"]:
        return xvfb()
    if args[:1] == ["x11vnc"]:
        return x11vnc()
    if args[:1] == ["browser"] and len(args) == 2:
        return browser(args[1])
    if args[:1] == ["display-ready"]:
        return display_ready()
    if args[:1] == ["password"]:
        print(ensure_password(_files()))
        return 0
    print("usage: python -m llm_supervisor.desktop "
          "{xvfb | display-ready | x11vnc | browser URL | password}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
