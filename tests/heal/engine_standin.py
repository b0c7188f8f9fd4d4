"""A stand-in for the model server whose llama.cpp engine dies at start with SIGILL (as a
llama.cpp built for another CPU does), while its transformers engine serves: the crash is real
(the process is killed by SIGILL), the model is not (loading a real one takes 15 s here).

``CRASH_ENGINE`` names the engine that dies (default llama.cpp; ``CRASH_ENGINE_ALL=1``: every
engine); ``ENGINE`` picks the engine.
"""

from __future__ import annotations

import http.server
import os
import resource
import signal


def main() -> None:
    engine = os.environ.get("ENGINE", "auto")
    print(f"loading the model with {engine}", flush=True)
    if engine == os.environ.get("CRASH_ENGINE", "llama.cpp") or os.environ.get("CRASH_ENGINE_ALL"):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test's cwd
        os.kill(os.getpid(), signal.SIGILL)
    body = f"engine={engine}".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
