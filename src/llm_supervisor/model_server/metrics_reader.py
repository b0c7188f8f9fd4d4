"""Request rate, latency and tokens per second from the model service's Prometheus ``/metrics``.

Counters only mean something as a rate between two scrapes: :class:`RateTracker` keeps the last
scrape. With a single scrape, the lifetime figures (tokens per second of generation time, mean
request latency) are still true and are what ``monitor --model`` shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class ModelCounters:
    requests: float = 0.0
    generated_tokens: float = 0.0
    duration_sum: float = 0.0
    duration_count: float = 0.0
    queued: float = 0.0
    running: float = 0.0
    at: float = 0.0

    @property
    def mean_latency_s(self) -> float | None:
        return self.duration_sum / self.duration_count if self.duration_count else None

    @property
    def lifetime_tokens_per_s(self) -> float | None:
        return self.generated_tokens / self.duration_sum if self.duration_sum else None


def parse(text: str) -> ModelCounters:
    counters = ModelCounters(at=time.monotonic())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, value = sample.name, sample.value
            if name == "llm_requests_total" and sample.labels.get("route", "").endswith(
                    ("generate", "completions")):
                counters.requests += value
            elif name == "llm_generation_tokens_total":
                counters.generated_tokens += value
            elif name == "llm_request_duration_seconds_sum":
                counters.duration_sum += value
            elif name == "llm_request_duration_seconds_count":
                counters.duration_count += value
            elif name == "llm_queue_size":
                counters.queued = value
            elif name == "llm_requests_running":
                counters.running = value
    return counters


class RateTracker:
    """Rates between this scrape and the previous one."""

    def __init__(self) -> None:
        self.previous: ModelCounters | None = None

    def update(self, current: ModelCounters) -> dict[str, Any]:
        previous, self.previous = self.previous, current
        result: dict[str, Any] = {
            "requests_total": current.requests,
            "generated_tokens_total": current.generated_tokens,
            "mean_latency_s": current.mean_latency_s,
            "tokens_per_s": current.lifetime_tokens_per_s,
            "requests_per_s": None,
            "queued": current.queued,
            "running": current.running,
        }
        if previous is not None and current.at > previous.at:
            span = current.at - previous.at
            result["requests_per_s"] = max(0.0, current.requests - previous.requests) / span
            new_count = current.duration_count - previous.duration_count
            if new_count > 0:
                result["mean_latency_s"] = (current.duration_sum - previous.duration_sum) / new_count
                result["tokens_per_s"] = max(0.0, current.generated_tokens
                                             - previous.generated_tokens) / max(
                    1e-9, current.duration_sum - previous.duration_sum)
        return result
