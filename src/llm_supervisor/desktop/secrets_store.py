"""The desktop's private files in ``STATE_DIR/desktop`` (directory 0700, files 0600).

- ``vnc-password``: the generated noVNC/VNC password in clear (shown by
  ``llm-supervisorctl novnc``); created once, at the first start, never a fixed default.
- ``vnc.passwd``: the same password in x11vnc's ``-rfbauth`` format, written by us (not by
  ``x11vnc -storepasswd PASS FILE``, which would put the password on a command line).
- ``Xauthority``: the MIT-MAGIC-COOKIE-1 that Xvfb requires (``-auth``), so other local users
  cannot connect to the display.
- ``display``: the X display number Xvfb was started on.

The directory belongs to the unit user, while the daemon (root) reads the password for
``GET /novnc`` and the Docker desktop's ``ExecStartPre`` writes it: so every read and write here
goes by a descriptor of the directory (``core/nofollow.py``) and never follows a link planted in
it — a link is replaced, not read or chmodded through.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llm_supervisor.core import nofollow
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
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = nofollow.open_dir_path(self.directory, 0o700)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        return self.directory


@contextlib.contextmanager
def _parent(path: Path) -> Iterator[int]:
    """A descriptor of ``path``'s directory, its last component reached without following a
    link (its own parent is the caller's: the state dir, or a directory of the unit's)."""
    # O_PATH: passing through the state dir (0711) needs no right to read it.
    parent = os.open(path.parent.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(path.parent.name, nofollow.DIR_FLAGS, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _owner_of(fd: int) -> tuple[int, int] | None:
    """Root writes files owned by the directory's owner (the unit user must read them)."""
    if os.geteuid() != 0:
        return None
    st = os.fstat(fd)
    return st.st_uid, st.st_gid


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte (a 0600 temporary file, then
    an atomic rename over whatever was there, a link included), so the secret is never readable
    by others, not even briefly, and never lands outside the directory."""
    with _parent(path) as fd:
        nofollow.write_file_at(fd, path.name, data, 0o600, _owner_of(fd))


def read_private(path: Path) -> bytes | None:
    """The content of the regular file ``path``; None when missing or a link."""
    try:
        with _parent(path) as fd:
            return nofollow.read_file_at(fd, path.name)
    except OSError:
        return None


def generate_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(MAX_PASSWORD_BYTES))


def read_password(files: DesktopFiles) -> str | None:
    data = read_private(files.password)
    return (data.decode(errors="replace").strip() or None) if data is not None else None


def ensure_password(files: DesktopFiles) -> str:
    """The desktop password: generated at the first start, then kept. The ``-rfbauth`` file is
    (re)written from it whenever it is missing or stale."""
    files.ensure_directory()
    password = read_password(files)
    if password is None:
        password = generate_password()
        write_private(files.password, password.encode() + b"\n")
    expected = rfbauth_bytes(password)
    if read_private(files.rfbauth) != expected:
        write_private(files.rfbauth, expected)
    with _parent(files.password) as fd:
        for path in (files.password, files.rfbauth):
            nofollow.chmod_at(fd, path.name, 0o600)
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
