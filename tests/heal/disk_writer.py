"""A unit that needs disk space at start: writes ``WRITE_MB`` MiB to ``DATA_DIR/out.bin`` (an
ENOSPC traceback ends it when the disk is full), then serves ``GET /`` on ``PORT``."""

from __future__ import annotations

import http.server
import os
from pathlib import Path


def main() -> None:
    target = Path(os.environ["DATA_DIR"]) / "out.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as handle:
        for _ in range(int(os.environ.get("WRITE_MB", "1"))):
            handle.write(b"\0" * (1 << 20))
        handle.flush()
        os.fsync(handle.fileno())
    print(f"wrote {target}", flush=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
