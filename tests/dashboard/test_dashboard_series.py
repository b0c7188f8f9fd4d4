"""The pieces behind the dashboard's pictures, on real inputs: the ring buffer's bounded memory
(an hour of points for 10 units, measured with tracemalloc), p50/p95 from the model server's own
Prometheus histogram (its real metrics registry, rendered), the timeline built from the event
dicts the supervisor sends, and real Caddy/Traefik access lines and log lines parsed."""

from __future__ import annotations

import json
import math
import tracemalloc

import pytest

from llm_supervisor.dashboard.history import MODEL_COLUMNS, History, model_point
from llm_supervisor.dashboard.latency import buckets, quantile
from llm_supervisor.dashboard.log_lines import describe
from llm_supervisor.dashboard.model_watch import Scrape
from llm_supervisor.dashboard.ring import Ring
from llm_supervisor.dashboard.timeline import Timeline
from llm_supervisor.model_server.metrics import Metrics
from llm_supervisor.model_server.metrics_reader import parse


def test_ring_keeps_the_newest_points_oldest_first_and_gaps_as_null() -> None:
    ring = Ring(("cpu", "memory"), capacity=3)
    for t in range(5):
        ring.append(float(t), [t * 10.0, None if t == 3 else t * 100.0])
    assert ring.columns_since() == {"t": [2.0, 3.0, 4.0], "cpu": [20.0, 30.0, 40.0],
                                    "memory": [200.0, None, 400.0]}
    assert ring.columns_since(3.0)["t"] == [4.0]
    assert ring.last() == {"t": 4.0, "cpu": 40.0, "memory": 400.0}
    with pytest.raises(ValueError):
        ring.append(5.0, [1.0])


def test_an_hour_of_points_for_ten_units_costs_a_fixed_small_amount() -> None:
    """README's figure: one hour at the default 5 s, 10 units and one model."""
    statuses = [{"name": f"unit{i}", "state": "running", "reason": "", "cpu_percent": 1.5,
                 "memory_bytes": 50_000_000} for i in range(10)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        history = History(interval=5.0, window=3600.0)
        for step in range(history.capacity * 2):  # twice around: nothing grows on the second lap
            history.record_units(statuses, float(step))
            history.record_model("model-service", [1.0] * len(MODEL_COLUMNS), float(step))
            if step == history.capacity:
                full = tracemalloc.take_snapshot().compare_to(before, "filename")
        after = tracemalloc.take_snapshot().compare_to(before, "filename")
    finally:
        tracemalloc.stop()
    used = sum(stat.size_diff for stat in after)
    at_full = sum(stat.size_diff for stat in full)
    assert history.capacity == 721
    assert history.nbytes() == 721 * 8 * (3 * 10 + 7)  # 213,416 bytes of samples
    assert used < 300_000, used
    assert used - at_full < 20_000, (at_full, used)  # bounded: the second lap adds nothing
    print(f"\nhour of points, 10 units + 1 model: {history.nbytes()} B of samples, "
          f"{used} B allocated in all")


def test_latency_quantiles_from_the_model_servers_histogram() -> None:
    metrics = Metrics()
    for _ in range(90):
        metrics.request_duration.observe(0.3)
    for _ in range(10):
        metrics.request_duration.observe(4.0)
    first = metrics.render().decode()
    for _ in range(100):
        metrics.request_duration.observe(0.05)
    second = metrics.render().decode()
    h1, h2 = buckets(first), buckets(second)
    p50, p95 = quantile(0.5, h1, None), quantile(0.95, h1, None)
    assert p50 is not None and 0.25 <= p50 <= 0.5, p50
    assert p95 is not None and 2.5 <= p95 <= 5.0, p95
    # between the two scrapes only the fast requests finished
    between = quantile(0.95, h2, h1)
    assert between is not None and between <= 0.1, between
    assert quantile(0.5, h2, h2) is None  # nothing finished: no point rather than a zero
    # the model chart's point: rates over the span between the scrapes
    point = model_point(Scrape(parse(second), h2, 10.0), Scrape(parse(first), h1, 5.0))
    assert point[2] is not None and point[3] is not None and not math.isnan(point[3])


def test_timeline_says_what_happened_and_leaves_other_runtime_skips_out() -> None:
    timeline = Timeline(keep=10)
    events = [
        {"type": "state", "unit": "w", "from": "inactive", "to": "starting", "reason": "start"},
        {"type": "state", "unit": "w", "from": "starting", "to": "running", "reason": "started"},
        {"type": "state", "unit": "w", "from": "running", "to": "backoff",
         "reason": "killed by SIGKILL; restarting in 1s"},
        {"type": "state", "unit": "w", "from": "backoff", "to": "starting", "reason": "restart"},
        {"type": "health", "unit": "w", "health": "unhealthy", "detail": "connection refused"},
        {"type": "repair", "unit": "m", "ok": True, "message": "re-fetched model.safetensors"},
        {"type": "state", "unit": "d", "from": "inactive", "to": "skipped",
         "reason": "condition unmet: the runtime is process (ConditionRuntime=docker)"},
    ]
    for event in events:
        timeline.add(event)
    kinds = [(e["unit"], e["kind"]) for e in timeline.since()]
    assert kinds == [("w", "start"), ("w", "running"), ("w", "exit"), ("w", "restart"),
                     ("w", "health"), ("m", "repair")]
    assert "SIGKILL" in timeline.since(unit="w")[2]["reason"]
    assert [e["id"] for e in timeline.since(after_id=5)] == [6]


CADDY = json.dumps({"level": "info", "ts": 1765000000.1, "logger": "http.log.access.log0",
                    "msg": "handled request", "request": {"remote_ip": "127.0.0.1",
                    "proto": "HTTP/1.1", "method": "POST", "host": "127.0.0.1:8000",
                    "uri": "/api/generate", "headers": {}}, "bytes_read": 40, "user_id": "",
                    "duration": 0.734, "size": 312, "status": 200, "resp_headers": {}})
TRAEFIK_JSON = json.dumps({"ClientHost": "127.0.0.1", "Duration": 12_500_000,
                           "RequestMethod": "GET", "RequestPath": "/api/health",
                           "DownstreamStatus": 503, "RouterName": "api@file",
                           "StartUTC": "2026-12-07T05:40:00.1Z"})
TRAEFIK_CLF = ('127.0.0.1 - - [07/Dec/2026:05:40:00 +0000] "GET /v1/models HTTP/1.1" 404 19 "-" '
               '"curl/7.88.1" 7 "api@file" "http://127.0.0.1:5000" 3ms')


@pytest.mark.parametrize(("line", "level", "access"), [
    (CADDY, "info", {"method": "POST", "path": "/api/generate", "status": 200,
                     "duration_ms": pytest.approx(734.0), "at": 1765000000.1}),
    (TRAEFIK_JSON, "error", {"method": "GET", "path": "/api/health", "status": 503,
                             "duration_ms": pytest.approx(12.5),
                             "at": "2026-12-07T05:40:00.1Z"}),
    (TRAEFIK_CLF, "warning", {"method": "GET", "path": "/v1/models", "status": 404,
                              "duration_ms": 3.0, "at": "07/Dec/2026:05:40:00 +0000"}),
    ('{"event": "model_ready", "level": "info", "timestamp": "2026-12-07T05:40:00Z"}', "info", None),
    ("2026-12-07T05:40:00Z ERR error=\"port taken\" providerName=file", "error", None),
    ('time="2026-12-07" level=warning msg="slow"', "warning", None),
    ("Traceback (most recent call last):", "error", None),
    ("alpha 12", None, None),
])
def test_log_lines_get_levels_and_access_lines_are_parsed(line: str, level: str | None,
                                                         access: dict | None) -> None:
    described = describe(line)
    assert described["level"] == level
    assert described["access"] == access
