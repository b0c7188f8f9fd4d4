"""A trivial HTTP program used as a unit in tests and benchmarks.

Usage: tiny_http.py PORT [--fail-file PATH] [--stamp-file PATH] [--grandchild] [--ignore-term]
GET / answers 200 "ok" (500 while FAIL_FILE exists). Appends its start time to STAMP_FILE.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--fail-file")
    parser.add_argument("--stamp-file")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    args = parser.parse_args()
    if args.stamp_file:
        with open(args.stamp_file, "a") as handle:
            handle.write(f"{time.time()} {os.getpid()}\n")
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.grandchild:
        # A child that would outlive us if the supervisor only killed the direct child.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print(f"grandchild {child.pid}", flush=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            failing = args.fail_file and os.path.exists(args.fail_file)
            body = b"failing" if failing else b"ok"
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *margs: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
