"""Restart pacing: capped exponential backoff and the start-rate limit.

One documented rule (README, "Unit files"): the n-th restart in a row waits
``min(RestartSec × 2^(n-1), RestartMaxDelaySec)``; a run that stayed up for ``STABLE_AFTER_S``
seconds resets n. More than ``StartLimitBurst`` starts within ``StartLimitIntervalSec`` puts the
unit in ``failed`` until someone starts it again.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

STABLE_AFTER_S = 10.0


@dataclass
class RestartPacer:
    restart_sec: float
    max_delay_sec: float
    burst: int
    interval_sec: float
    consecutive: int = 0
    starts: deque[float] = field(default_factory=deque)

    def record_start(self, now: float | None = None) -> None:
        self.starts.append(time.monotonic() if now is None else now)

    def limit_hit(self, now: float | None = None) -> bool:
        """True when one more start would exceed the burst within the interval."""
        if self.burst <= 0:
            return False
        now = time.monotonic() if now is None else now
        while self.starts and now - self.starts[0] > self.interval_sec:
            self.starts.popleft()
        return len(self.starts) >= self.burst

    def record_exit(self, ran_for_s: float) -> None:
        self.consecutive = 0 if ran_for_s >= STABLE_AFTER_S else self.consecutive + 1

    def next_delay(self) -> float:
        exponent = max(self.consecutive - 1, 0)
        return min(self.restart_sec * (2**min(exponent, 30)), self.max_delay_sec)

    def reset(self) -> None:
        self.consecutive = 0
        self.starts.clear()
