"""Logging set-up: structlog JSON lines on stdout when not on a TTY, readable lines on a TTY.

Standard-library loggers (Sanic, transformers, huggingface_hub) go through the same renderer, so
the supervisor reads one JSON object per line whatever produced it.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import structlog

_NOISY_LOGGERS = {
    # bitsandbytes warns about a dtype cast on every int8 matmul unless the compute dtype is fp16.
    "bitsandbytes.autograd._functions": logging.ERROR,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "sanic.access": logging.WARNING,
}


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the standard library's root logger once."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn(...) become JSON lines too
    for name, lvl in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(lvl)
    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "transformers"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def get_logger(name: str = "llm_supervisor.model_server") -> structlog.stdlib.BoundLogger:
    """A structlog logger bound to ``name``."""
    return structlog.get_logger(name)


def flush() -> None:
    """Flush stdout/stderr; call before ``os._exit`` so the last event is not lost."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
