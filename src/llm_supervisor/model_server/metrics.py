"""Prometheus metrics of the model server, in a registry of their own.

Names mirror TGI and vLLM where they overlap (request counts, queue size, batch size, generated
tokens, time to first token, time per output token).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class Metrics:
    """All metrics the server exports. One instance per process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llm_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.failures = Counter("llm_request_failures", "Failed requests by error type", ["err"], registry=r)
        self.queue_size = Gauge("llm_queue_size", "Requests waiting for a batch slot", registry=r)
        self.running = Gauge("llm_requests_running", "Requests being generated", registry=r)
        self.batch_size = Gauge("llm_batch_current_size", "Rows in the running batch", registry=r)
        self.prompt_tokens = Counter("llm_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("llm_generation_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "Time from request arrival to its first token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_per_token = Histogram(
            "llm_time_per_output_token_seconds",
            "Mean time between a request's tokens after the first",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "llm_request_duration_seconds",
            "Time from request arrival to its last token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.load_seconds = Gauge(
            "llm_model_load_seconds",
            "Seconds spent making the model ready (fetch, convert, load)",
            registry=r,
        )
        self.loading_progress = Gauge(
            "llm_model_loading_progress", "Loading progress, 0..1 (1 when ready)", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
