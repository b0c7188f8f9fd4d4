"""The desktop's private files in ``STATE_DIR/desktop`` (directory 0700, files 0600).

- ``vnc-password``: the generated noVNC/VNC password in clear (shown by
  ``llm-supervisorctl novnc``); created once, at the first start, never a fixed default.
- ``vnc.passwd``: the same password in x11vnc's ``-rfbauth`` format, written by us (not by
  ``x11vnc -storepasswd PASS FILE``, which would put the password on a command line).
- ``Xauthority``: the MIT-MAGIC-COOKIE-1 that Xvfb requires (``-auth``), so other local users
  cannot connect to the display.
- ``display``: the X display number Xvfb was started on.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from llm_supervisor.core.fsutil import atomic_write_bytes
from llm_supervisor.desktop.vncauth import MAX_PASSWORD_BYTES, rfbauth_bytes

# Unambiguous letters and digits: 8 characters (VNC's limit) from 56 symbols ≈ 46 bits.
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


@dataclass(frozen=True)
class DesktopFiles:
    state_dir: Path

    @property
    def directory(self) -> Path:
        return self.state_dir / "desktop"

    @property
    def password(self) -> Path:
        return self.directory / "vnc-password"

    @property
    def rfbauth(self) -> Path:
        return self.directory / "vnc.passwd"

    @property
    def xauthority(self) -> Path:
        return self.directory / "Xauthority"

    @property
    def browser_xauthority(self) -> Path:
        """The browser's copy of the cookie it started with: when Xvfb restarts (new cookie) the
        copy differs, and the browser unit's health check (``cmp``) restarts the browser, which
        would otherwise keep running attached to the dead display."""
        return self.directory / "browser.Xauthority"

    @property
    def display(self) -> Path:
        return self.directory / "display"

    @property
    def browser_profile(self) -> Path:
        return self.directory / "browser-profile"

    def ensure_directory(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        return self.directory


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte (a 0600 temporary file, then
    an atomic rename), so the secret is never readable by others, not even briefly."""
    atomic_write_bytes(path, data, mode=0o600)


def generate_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(MAX_PASSWORD_BYTES))


def read_password(files: DesktopFiles) -> str | None:
    try:
        return files.password.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_password(files: DesktopFiles) -> str:
    """The desktop password: generated at the first start, then kept. The ``-rfbauth`` file is
    (re)written from it whenever it is missing or stale."""
    files.ensure_directory()
    password = read_password(files)
    if password is None:
        password = generate_password()
        write_private(files.password, password.encode() + b"\n")
    expected = rfbauth_bytes(password)
    try:
        current = files.rfbauth.read_bytes()
    except FileNotFoundError:
        current = b""
    if current != expected:
        write_private(files.rfbauth, expected)
    for path in (files.password, files.rfbauth):
        os.chmod(path, 0o600)
    return password


def xauthority_entry(display_number: int, cookie: bytes) -> bytes:
    """One Xauthority record (FamilyWild, so it matches the local display however it is named)."""

    def counted(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    family_wild = 0xFFFF
    return (family_wild.to_bytes(2, "big") + counted(b"") + counted(str(display_number).encode())
            + counted(b"MIT-MAGIC-COOKIE-1") + counted(cookie))


def write_xauthority(files: DesktopFiles, display_number: int) -> None:
    files.ensure_directory()
    write_private(files.xauthority, xauthority_entry(display_number, secrets.token_bytes(16)))
