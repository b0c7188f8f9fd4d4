"""Fault injection for the stall test (on PYTHONPATH of the model server only): the real
transformers engine's decoding step blocks forever after ``HEAL_TEST_STALL_AFTER`` steps, as a
wedged kernel or driver call would — once (the marker file ``HEAL_TEST_STALL_MARKER`` says it
happened). After that, every step is slowed by ``HEAL_TEST_STEP_DELAY`` seconds, so a long
answer takes longer than ``StallTimeoutSec=`` while still producing tokens."""

from __future__ import annotations

import os

if os.environ.get("HEAL_TEST_STALL_MARKER"):
    import threading
    import time
    from pathlib import Path

    from llm_supervisor.model_server.engines import transformers_engine

    _marker = Path(os.environ["HEAL_TEST_STALL_MARKER"])
    _after = int(os.environ.get("HEAL_TEST_STALL_AFTER", "3"))
    _delay = float(os.environ.get("HEAL_TEST_STEP_DELAY", "0"))
    _original = transformers_engine.Engine._step
    _steps = [0]

    def _step(self: transformers_engine.Engine) -> None:
        _steps[0] += 1
        if not _marker.exists() and _steps[0] > _after:
            _marker.write_text(str(os.getpid()))
            threading.Event().wait()  # stuck for good
        if _marker.exists() and _delay:
            time.sleep(_delay)
        _original(self)

    transformers_engine.Engine._step = _step  # type: ignore[method-assign]
