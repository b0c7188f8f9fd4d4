"""VNC passwords: the ``-rfbauth`` file format (``x11vnc -storepasswd``) and the RFB challenge
response (RFC 6143 §7.2.2), both single DES with VNC's bit-reversed key bytes.

DES here is VNC's fixed, public obfuscation, not protection: the file's 0600 mode is what keeps
the password private. The cipher itself comes from pycryptodome.
"""

from __future__ import annotations

from Crypto.Cipher import DES


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """Single-DES encryption of one 8-byte block."""
    return DES.new(key, DES.MODE_ECB).encrypt(block)


# The fixed key every VNC implementation uses to obfuscate stored passwords (public, by design).
_STORE_KEY = bytes((23, 82, 107, 6, 35, 78, 88, 7))
MAX_PASSWORD_BYTES = 8  # VNC authentication uses only the first 8 bytes of a password


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def _vnc_key(raw: bytes) -> bytes:
    """VNC feeds DES each key byte with its bits reversed."""
    padded = raw[:MAX_PASSWORD_BYTES].ljust(MAX_PASSWORD_BYTES, b"\0")
    return bytes(_reverse_bits(b) for b in padded)


def rfbauth_bytes(password: str) -> bytes:
    """The 8 bytes ``x11vnc -storepasswd`` writes for ``password`` (its ``-rfbauth`` file)."""
    block = password.encode("latin-1")[:MAX_PASSWORD_BYTES].ljust(MAX_PASSWORD_BYTES, b"\0")
    return encrypt_block(_vnc_key(_STORE_KEY), block)


def challenge_response(password: str, challenge: bytes) -> bytes:
    """The client's answer to a 16-byte VNC authentication challenge."""
    if len(challenge) != 16:
        raise ValueError("a VNC challenge is 16 bytes")
    key = _vnc_key(password.encode("latin-1"))
    return encrypt_block(key, challenge[:8]) + encrypt_block(key, challenge[8:])
