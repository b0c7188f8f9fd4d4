"""Reading a VNC framebuffer through noVNC's websockify (RFB 3.8, raw encoding): enough to tell
a blank screen from a page. Builds on tests/desktop/rfb_client.py's stream and DES answer."""

from __future__ import annotations

import struct

from websockets.sync.client import connect  # noqa: E402

from llm_supervisor.desktop.vncauth import challenge_response  # noqa: E402
from tests.desktop.rfb_client import _Stream  # noqa: E402

# 32 bits per pixel, depth 24, little endian, true colour, 8 bits per channel.
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


def read_framebuffer(url: str, password: str) -> tuple[int, int, bytes]:
    """(width, height, BGRX pixels) of the whole screen, after VNC authentication."""
    with connect(url, subprotocols=["binary"], open_timeout=10, max_size=None) as ws:
        stream = _Stream(ws)
        stream.read(12)
        stream.send(b"RFB 003.008\n")
        types = list(stream.read(stream.read(1)[0]))
        assert 2 in types, f"VNC authentication not offered: {types}"
        stream.send(b"\x02")
        stream.send(challenge_response(password, stream.read(16)))
        assert struct.unpack(">I", stream.read(4))[0] == 0, "VNC authentication failed"
        stream.send(b"\x01")
        width, height = struct.unpack(">HH", stream.read(4))
        stream.read(16)
        stream.read(struct.unpack(">I", stream.read(4))[0])
        stream.send(b"\x00\x00\x00\x00" + PIXEL_FORMAT)  # SetPixelFormat
        stream.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only
        stream.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))  # full update request
        pixels = bytearray(width * height * 4)
        while True:
            message_type = stream.read(1)[0]
            if message_type == 0:
                break
            assert message_type in (1, 2, 3), f"unexpected RFB message {message_type}"
            if message_type == 2:  # Bell
                continue
            raise AssertionError(f"unexpected RFB message {message_type} before the update")
        stream.read(1)
        (count,) = struct.unpack(">H", stream.read(2))
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", stream.read(12))
            assert encoding == 0, f"asked for raw, got encoding {encoding}"
            data = stream.read(w * h * 4)
            for row in range(h):
                start = ((y + row) * width + x) * 4
                pixels[start:start + w * 4] = data[row * w * 4:(row + 1) * w * 4]
        return width, height, bytes(pixels)


def distinct_colours(pixels: bytes, step: int = 97) -> int:
    return len({pixels[i:i + 3] for i in range(0, len(pixels) - 4, 4 * step)})
