"""A request the server cancels for shutdown ends with ``shutdown`` even when the generation
worker stops before it finished that request itself (a decode step still running when the
shutdown's last wait ends: seen once on a busy CI machine, as ``cancelled``).

The engine here is a stand-in (the one fake in this folder): its step sleeps 3 s and never
looks at cancellations, which makes the slow-step case certain; a real llama.cpp decode step
cannot be made that slow on purpose. Everything else (queue, worker thread, shutdown, events)
is the real BatchingEngine. test_model_llamacpp.py covers the same reason with the real engine.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from llm_supervisor.model_server.engines.batching import (
    BatchingEngine,
    GenerationHandle,
    SamplingParams,
)


class SlowStepEngine(BatchingEngine):
    def __init__(self) -> None:
        super().__init__(SimpleNamespace(tokenizer=None, eos_token_ids=[0]), max_batch_size=1,
                         max_concurrent=1)
        self.batch: list[GenerationHandle] = []

    def _busy(self) -> bool:
        return bool(self.batch)

    def _admit(self) -> None:
        self.batch += self._take_pending(1 - len(self.batch))

    def _step(self) -> None:
        time.sleep(3.0)  # longer than shutdown's 2 s wait for the requests to finish

    def _drop_all(self) -> list[GenerationHandle]:
        dropped, self.batch = self.batch, []
        return dropped


def test_a_request_cancelled_for_shutdown_keeps_its_reason_when_the_worker_stops_first() -> None:
    async def scenario() -> list[tuple[str, object]]:
        engine = SlowStepEngine()
        engine.start(asyncio.get_running_loop())
        handle = engine.submit([1, 2, 3], SamplingParams(max_new_tokens=10))
        while not engine.batch:  # admitted: the worker is in its slow step
            await asyncio.sleep(0.01)
        await engine.shutdown(grace=0.1)
        assert handle.cancelled and handle.cancel_reason == "shutdown"
        return [event async for event in handle.events()]

    events = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert events[-1] == ("done", "shutdown")
