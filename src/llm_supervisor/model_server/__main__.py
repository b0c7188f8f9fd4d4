"""Entry point: ``python -m llm_supervisor.model_server`` or ``llm-model-server``.

Runs Sanic in a single process (no worker manager), so the PID the supervisor started is the
server. Exit codes: 0 after SIGTERM/SIGINT, ``WEIGHTS_LOAD_FAILED`` (65) when the model's files
cannot be loaded, ``CONFIG_ERROR`` (78) for invalid settings, 1 when no model source works.
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from llm_supervisor.core.exit_codes import CONFIG_ERROR
from llm_supervisor.model_server import logs
from llm_supervisor.model_server.settings import ModelServerSettings


def main() -> int:
    """Run the model server until it is told to stop; return the process exit code."""
    try:
        settings = ModelServerSettings()
    except ValidationError as exc:
        logs.configure_logging()
        logs.get_logger().error("config_invalid", error=str(exc), exit_code=CONFIG_ERROR)
        return CONFIG_ERROR
    logs.configure_logging(settings.log_format, settings.log_level)
    _quiet_libraries()

    from llm_supervisor.model_server.api.app import (
        create_app,  # Sanic and the app's modules after logging is set up
    )

    app = create_app(settings)
    try:
        app.run(
            host=settings.host,
            port=settings.port,
            single_process=True,
            access_log=False,
            motd=False,
            debug=False,
            auto_reload=False,
        )
    except OSError as exc:  # port in use, bad host
        logs.get_logger().error(
            "listen_failed",
            host=settings.host,
            port=settings.port,
            error=str(exc),
            exit_code=CONFIG_ERROR,
        )
        return CONFIG_ERROR
    logs.get_logger().info("stopped")
    loader = app.ctx.state.loader
    if loader is not None and loader.is_alive():
        # Stopped mid-load: the loader cannot be interrupted and transformers' thread pools
        # would block interpreter exit until it finished. Its staging directory is cleaned up
        # by the next start.
        logs.flush()
        os._exit(0)
    return 0


def _quiet_libraries() -> None:
    """No progress bars on stdout (they are not JSON); our own progress is in /api/health.
    transformers' own bars are switched off where it is imported (the transformers engine
    only: a llama.cpp server never imports torch or transformers)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":
    sys.exit(main())
