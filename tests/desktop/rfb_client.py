"""Just enough of the RFB protocol (RFC 6143) to test VNC authentication through websockify."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from websockets.sync.client import ClientConnection, connect

from llm_supervisor.desktop.vncauth import challenge_response

SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2


@dataclass
class HandshakeResult:
    server_version: bytes
    security_types: list[int]
    authenticated: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    name: str = ""


class _Stream:
    """Byte-stream reads over WebSocket binary messages (message boundaries mean nothing)."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.buffer = b""

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            message = self.ws.recv(timeout=10)
            self.buffer += message if isinstance(message, bytes) else message.encode()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, data: bytes) -> None:
        self.ws.send(data)


def handshake(url: str, password: str | None, security_type: int = SECURITY_VNC_AUTH
              ) -> HandshakeResult:
    """Connect, negotiate RFB 3.8, try ``security_type`` with ``password``; on success send
    ClientInit and read ServerInit (framebuffer size and desktop name)."""
    with connect(url, subprotocols=["binary"], open_timeout=10, max_size=None) as ws:
        stream = _Stream(ws)
        version = stream.read(12)
        stream.send(b"RFB 003.008\n")
        count = stream.read(1)[0]
        if count == 0:  # the server refused the connection outright
            length = struct.unpack(">I", stream.read(4))[0]
            return HandshakeResult(version, [], False, stream.read(length).decode(errors="replace"))
        types = list(stream.read(count))
        if security_type not in types:
            return HandshakeResult(version, types, False, "security type not offered")
        stream.send(bytes([security_type]))
        if security_type == SECURITY_VNC_AUTH:
            challenge = stream.read(16)
            stream.send(challenge_response(password or "", challenge))
        status = struct.unpack(">I", stream.read(4))[0]
        if status != 0:
            length = struct.unpack(">I", stream.read(4))[0]
            return HandshakeResult(version, types, False,
                                   stream.read(length).decode(errors="replace"))
        stream.send(b"\x01")  # ClientInit: shared
        width, height = struct.unpack(">HH", stream.read(4))
        stream.read(16)  # pixel format
        name_length = struct.unpack(">I", stream.read(4))[0]
        name = stream.read(name_length).decode(errors="replace")
        return HandshakeResult(version, types, True, "", width, height, name)
