"""The test desktop inside the novnc image: Xvfb, x11vnc and noVNC (websockify) in one container.

The same preparation as the process units (:mod:`llm_supervisor.desktop.launch`: a free display,
a fresh X cookie, the ``-rfbauth`` file from the password), then the three programs as children;
when one exits the others are stopped and the container exits, so the supervisor sees one exit
and restarts the unit. The password comes from a secret file mounted read-only
(``VNC_PASSWORD_FILE``, default ``/run/secrets/vnc_password``; the first line, 8 characters).
x11vnc listens on the container's loopback only: noVNC on ``NOVNC_PORT`` is the way in. The
browser container shares ``/tmp/.X11-unix`` and the state directory (display number, cookie).

Run: ``python3 -m llm_supervisor.desktop.container`` (the novnc image's CMD). On the host,
``python -m llm_supervisor.desktop.container secret`` (the unit's ``ExecStartPre``) writes the
desktop's password (the one ``llm-supervisorctl novnc`` shows) to
``STATE_DIR/desktop-container/vnc_password``, readable by the image's uid 10001 only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llm_supervisor.desktop.display import free_display, wait_for_display
from llm_supervisor.desktop.secrets_store import DesktopFiles, write_private, write_xauthority
from llm_supervisor.desktop.vncauth import MAX_PASSWORD_BYTES, rfbauth_bytes

EX_CONFIG = 78
VNC_PORT = 5900
IMAGE_UID = 10001


def read_secret(path: Path) -> str | None:
    try:
        first = path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return first[:MAX_PASSWORD_BYTES] or None


def write_secret() -> int:
    """The host side: the password file the container mounts read-only. Docker (root) mounts
    the file itself, so its directory stays root's and 0700: no host user — whoever has the
    image's uid 10001 here included — can reach it; only the file is the image user's (0400)."""
    # Imported here: this module also runs inside the desktop image, which has no settings
    # library (pydantic-settings); only this host-side command needs it.
    from llm_supervisor.config import load_settings
    from llm_supervisor.core import nofollow
    from llm_supervisor.desktop.secrets_store import ensure_password

    state_dir = load_settings().state_dir
    password = ensure_password(DesktopFiles(state_dir))
    directory = Path(state_dir) / "desktop-container"
    fd = nofollow.open_dir_path(directory, 0o700)
    try:
        os.fchmod(fd, 0o700)
        owner = (IMAGE_UID, IMAGE_UID) if os.geteuid() == 0 else None
        nofollow.write_file_at(fd, "vnc_password", password.encode() + b"\n",
                               0o400 if owner else 0o600, owner)
    finally:
        os.close(fd)
    print(f"desktop: password file for the container at {directory / 'vnc_password'}",
          file=sys.stderr)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["secret"]:
        return write_secret()
    secret = Path(os.environ.get("VNC_PASSWORD_FILE", "/run/secrets/vnc_password"))
    password = read_secret(secret)
    if password is None:
        print(f"desktop: no VNC password in {secret}; mount one read-only (VNC_PASSWORD_FILE)",
              file=sys.stderr)
        return EX_CONFIG
    files = DesktopFiles(Path(os.environ.get("LLM_SUPERVISOR_STATE_DIR", "/var/lib/llm-supervisord")))
    files.ensure_directory()
    write_private(files.rfbauth, rfbauth_bytes(password))
    number = free_display()
    write_xauthority(files, number)
    files.display.write_text(f"{number}\n")
    screen = os.environ.get("SCREEN_GEOMETRY", "1280x800x24")
    novnc_port = os.environ.get("NOVNC_PORT", "6080")
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    # No MIT-SHM: the browser runs in another container (another IPC namespace), where the
    # shared-memory images it would hand to the X server cannot be attached; its window would
    # stay black. Without the extension clients send pixels over the socket.
    children.append(subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", screen,
                                      "-nolisten", "tcp", "-extension", "MIT-SHM",
                                      "-auth", str(files.xauthority)]))
    if not wait_for_display(number, 20):
        stop()
        print(f"desktop: Xvfb :{number} did not come up", file=sys.stderr)
        return 1
    display_env = {**os.environ, "DISPLAY": f":{number}", "XAUTHORITY": str(files.xauthority)}
    children.append(subprocess.Popen(
        ["x11vnc", "-display", f":{number}", "-auth", str(files.xauthority), "-rfbauth",
         str(files.rfbauth), "-localhost", "-rfbport", str(VNC_PORT), "-forever", "-shared",
         "-norc", "-noipv6", "-noxdamage", "-noshm", "-quiet"], env=display_env))
    children.append(subprocess.Popen(["websockify", "--web", "/usr/share/novnc",
                                      f"0.0.0.0:{novnc_port}", f"127.0.0.1:{VNC_PORT}"]))
    print(f"desktop: display :{number}, noVNC on {novnc_port}", file=sys.stderr, flush=True)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    dead = next(child for child in children if child.poll() is not None)
    print(f"desktop: {dead.args[0]} exited ({dead.returncode}); stopping", file=sys.stderr)
    stop()
    return 1


if __name__ == "__main__":
    sys.exit(main())
