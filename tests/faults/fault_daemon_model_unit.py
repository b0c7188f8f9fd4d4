"""A stand-in for the model server in the daemon fault suite (no torch: starts in a blink).

Usage: fault_daemon_model_unit.py PORT (model directory from MODEL_PATH)
Verifies MODEL_PATH against its manifest as the real server does (VERIFY_MODEL=sha256): on a
problem it prints the ``weights_load_failed`` event and exits 65, like the real server, so the
model-repair plugin takes over; otherwise it answers HTTP 200 on every path.
"""

from __future__ import annotations

import http.server
import json
import os
import sys

from llm_supervisor.core.exit_codes import WEIGHTS_LOAD_FAILED
from llm_supervisor.model_server.weights.manifest import verify_model_dir


def main() -> None:
    port = int(sys.argv[1])
    model = os.environ["MODEL_PATH"]
    problems = verify_model_dir(model)
    if problems:
        first = problems[0]
        print(json.dumps({"event": "weights_load_failed", "file": os.path.join(model, first.path),
                          "error_type": "ManifestMismatch", "error": first.detail,
                          "model_path": model}), flush=True)
        sys.exit(WEIGHTS_LOAD_FAILED)
    print(f"model verified; serving on {port}", flush=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
