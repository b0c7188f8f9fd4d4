"""API keys for the gateway: which file, whether it is needed, and reading it.

``API_KEYS_FILE`` holds one key per line (blank lines and ``#`` comments ignored). Keys guard
``/api`` and ``/v1`` (``Authorization: Bearer KEY``) when the file is set explicitly, or when the
gateway listens beyond loopback (``BIND_ADDRESS`` other than 127.0.0.1/::1/localhost): then the
default file ``STATE_DIR/gateway/api-keys`` is generated on first use, mode 0600, with one random
key. A gateway on loopback only with no ``API_KEYS_FILE`` stays open, as before.

The file is re-read when it changes (size, mtime or inode), so adding or revoking a key needs
no restart of anything.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.core.fsutil import atomic_write_text

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
GUARDED_PREFIXES = ("/api", "/v1")
DEFAULT_NAME = "api-keys"


def default_keys_file(state_dir: Path) -> Path:
    return state_dir / "gateway" / DEFAULT_NAME


def keys_file(settings: Any) -> Path | None:
    """The keys file the gateway must enforce, or None when the gateway stays open."""
    explicit = getattr(settings, "api_keys_file", None)
    if explicit:
        return Path(explicit)
    if str(settings.bind_address) in LOOPBACK_HOSTS:
        return None
    return default_keys_file(Path(settings.state_dir))


def ensure_keys_file(path: Path) -> bool:
    """Create ``path`` (0600, one new key) when it does not exist; True when created. An existing
    file is never rewritten, only warned about by :func:`problems` when others may read it."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# API keys for the gateway (llm-supervisord): one per line; send one as\n"
            "# 'Authorization: Bearer KEY'. Edits apply without a restart.\n"
            f"{secrets.token_urlsafe(32)}\n")
    atomic_write_text(path, text, mode=0o600)
    return True


def problems(path: Path) -> list[str]:
    """What is wrong with the file (unreadable, readable by others, no key); [] when fine."""
    try:
        info = path.stat()
    except OSError as exc:
        return [f"API_KEYS_FILE {path}: {exc.strerror}; create it (one key per line, chmod 600)"]
    found = []
    if stat.S_IMODE(info.st_mode) & 0o077:
        found.append(f"API_KEYS_FILE {path} is readable by others "
                     f"({oct(stat.S_IMODE(info.st_mode))}): chmod 600 {path}")
    if not parse(path.read_text(errors="replace")):
        found.append(f"API_KEYS_FILE {path} holds no key: every guarded request gets 401; "
                     "add one key per line")
    return found


def parse(text: str) -> list[str]:
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


@dataclass
class KeyRing:
    """The keys of one file, re-read whenever the file changes."""

    path: Path
    _keys: list[bytes] = field(default_factory=list)
    _seen: tuple[int, int, int] | None = None

    def keys(self) -> list[bytes]:
        try:
            info = os.stat(self.path)
        except OSError:
            self._keys, self._seen = [], None  # a missing file lets nobody in
            return self._keys
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature != self._seen:
            try:
                self._keys = [k.encode() for k in parse(self.path.read_text(errors="replace"))]
            except OSError:
                self._keys = []
            self._seen = signature
        return self._keys

    def allows(self, authorization: str | None) -> bool:
        """Whether ``Authorization: Bearer KEY`` names a key (compared in constant time)."""
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        offered = token.strip().encode()
        return any(hmac.compare_digest(offered, key) for key in self.keys())
