"""The heals as a user sees them, through a real llm-supervisord: after an OOM heal,
``status --json`` carries the ``heal`` object and the memory limit, ``status`` prints the
``healed:`` line and use against ``MemoryMax=``, ``/metrics`` has the heal gauges, and the
daemon's event log has the repair event."""

from __future__ import annotations

import json

import pytest

from llm_supervisor.runtimes.process import cgroups
from tests.daemon_harness import Daemon, free_port, wait_for
from tests.heal.heal_helpers import hungry_unit


@pytest.mark.skipif(cgroups.detect() is None, reason="no writable memory cgroup here (root)")
def test_oom_heal_shows_in_status_metrics_and_events(daemon: Daemon) -> None:
    port = free_port()
    daemon.write_unit("hog.service", hungry_unit(port, "60M"))
    daemon.start()
    daemon.wait_state("hog", "running", timeout=60, health="healthy")
    unit = wait_for(lambda: (u := daemon.unit("hog")).get("heal", {}).get("state") == "healed"
                    and u, 30, "the healed line")
    assert unit["heal"]["line"] == "healed: OOM → context 4096, 1 slot → context 2048"
    assert unit["memory_max"] == 60 << 20

    listed = json.loads(daemon.ctl("status", "--json", check=True).stdout)
    assert next(u for u in listed if u["name"] == "hog")["heal"]["kind"] == "oom"
    text = daemon.ctl("status", check=True).stdout
    assert "healed: OOM → context 4096, 1 slot → context 2048" in " ".join(text.split())
    assert "/60.0M" in text

    metrics = daemon.client.request("GET", "/metrics").text
    assert 'llm_supervisor_unit_degraded{kind="oom",unit="hog.service"} 0.0' in metrics
    assert 'llm_supervisor_unit_heals{kind="oom",unit="hog.service"} 1.0' in metrics
    assert 'llm_supervisor_unit_memory_max_bytes{unit="hog.service"} 6.291456e+07' in metrics
    assert any(e.get("event") == "heal" and e.get("kind") == "oom" for e in daemon.events()), \
        daemon.log_tail()
