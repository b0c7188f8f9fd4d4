"""Latency quantiles (p50, p95) of the requests finished between two scrapes of the model
service's ``llm_request_duration_seconds`` histogram: the difference of the cumulative bucket
counts, interpolated linearly inside the bucket the quantile falls in (as Prometheus'
``histogram_quantile`` does)."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

HISTOGRAM = "llm_request_duration_seconds"


def buckets(text: str, name: str = HISTOGRAM) -> dict[float, float]:
    """Cumulative counts by upper bound (``+Inf`` included), summed over label sets."""
    found: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == name + "_bucket":
                bound = float(sample.labels["le"])
                found[bound] = found.get(bound, 0.0) + sample.value
    return found


def quantile(q: float, now: dict[float, float], before: dict[float, float] | None) -> float | None:
    """The ``q`` quantile of the requests counted in ``now`` but not in ``before``; None when
    there were none."""
    bounds = sorted(now)
    counts = [now[b] - (before or {}).get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None
