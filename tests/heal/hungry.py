"""A test program whose memory grows with its configuration, as a model server's does.

Allocates ``LLAMA_N_CTX × MAX_BATCH_SIZE × KIB_PER_CELL`` KiB (touching every page, so the
memory is really resident), prints the size, then serves ``GET /`` on ``PORT`` with 200 and
the size it runs at.
"""

from __future__ import annotations

import http.server
import os


def main() -> None:
    context = int(os.environ.get("LLAMA_N_CTX", "4096"))
    slots = int(os.environ.get("MAX_BATCH_SIZE", "1"))
    kib = int(os.environ.get("KIB_PER_CELL", "16"))
    size = context * slots * kib * 1024
    block = bytearray(size)
    for offset in range(0, size, 4096):
        block[offset] = 1
    print(f"allocated {size >> 20} MiB for context {context} x {slots}", flush=True)
    body = f"context={context} slots={slots}".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.block = block  # keep it alive
    server.serve_forever()


if __name__ == "__main__":
    main()
