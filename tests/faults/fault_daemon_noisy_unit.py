"""A unit program for the daemon fault suite: an HTTP server that logs a lot.

Usage: fault_daemon_noisy_unit.py PORT
A thread prints a numbered 1000-byte line every 10 ms (100 KB/s); every GET prints a line too
before answering, so a blocked stdout pipe (a supervisor that stopped draining it) stops the
answers: exactly what the tests must never see.
"""

from __future__ import annotations

import http.server
import sys
import threading
import time


def chatter() -> None:
    number = 0
    while True:
        number += 1
        print(f"chatter {number:08d} " + "x" * 980, flush=True)
        time.sleep(0.01)


def main() -> None:
    port = int(sys.argv[1])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            print(f"request {self.path}", flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=chatter, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
