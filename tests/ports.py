"""Free TCP ports for the tests, handed out so that two tests never race for one.

Asking the kernel for port 0 and closing the socket gives a port that is free *now*; two
pytest-xdist workers (or two calls in one test, before either server binds) can get the same
one, and a port from the ephemeral range can meanwhile be taken by any outgoing connection. So
each worker takes ports from its own block below the ephemeral range (32768-60999 on Linux),
walks it with a stride of 7 (the daemon puts the model router at MODEL_SERVICE_PORT + 99, which
a stride of 7 reaches only after wrapping the block) and still checks that each port binds.
"""

from __future__ import annotations

import os
import random
import socket
import threading

FIRST_PORT = 12000
BLOCK = 4000  # ports per worker: gw0 12000-15999, gw1 16000-19999, ... (up to 5 workers)
STRIDE = 7
_lock = threading.Lock()


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # serial runs use the first block
    digits = name.removeprefix("gw")
    return int(digits) % 5 if digits.isdigit() else 0


class _Ports:
    def __init__(self) -> None:
        self.start = FIRST_PORT + _worker_index() * BLOCK
        # Another test run on the same machine starts elsewhere in the block.
        self.offset = random.Random(os.getpid()).randrange(BLOCK)

    def take(self, count: int = 1) -> int:
        for _ in range(BLOCK):
            self.offset = (self.offset + STRIDE) % (BLOCK - count)
            first = self.start + self.offset
            if all(_binds(port) for port in range(first, first + count)):
                self.offset += count - 1  # the next walk starts past the run handed out
                return first
        raise RuntimeError(f"no {count} free port(s) in {self.start}-{self.start + BLOCK - 1}")


def _binds(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_ports: _Ports | None = None


def free_port() -> int:
    """A port on 127.0.0.1 that binds now and that no other call in this run has handed out
    lately."""
    return consecutive_free_ports(1)


def consecutive_free_ports(count: int) -> int:
    """A port P such that P .. P+count-1 all bind now (replica i listens on P+i-1)."""
    global _ports
    with _lock:
        if _ports is None:
            _ports = _Ports()
        return _ports.take(count)
