"""CPU % and memory per unit (whole process tree, or container) in status, status --json and
/metrics."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from llm_supervisor.supervisor.resources import ContainerSampler, ProcessTreeSampler, container_usage
from tests.cli.cli_programs import hungry_tree_unit, sleeper_unit
from tests.daemon_harness import Daemon, wait_for

MB = 1024 * 1024


def _status_json(daemon: Daemon) -> dict[str, dict]:
    result = daemon.ctl("status", "--json", check=True)
    return {unit["name"]: unit for unit in json.loads(result.stdout)}


def test_status_json_text_and_metrics_show_the_whole_tree(cli_daemon: Daemon):
    cli_daemon.write_unit("hungry.service", hungry_tree_unit(80))
    cli_daemon.write_unit("idle.service", sleeper_unit())  # not wanted by the target
    cli_daemon.start()
    unit = cli_daemon.wait_state("hungry", "running")
    wait_for(lambda: "holding" in cli_daemon.ctl("logs", "hungry").stdout, 30, "memory held")
    shell_rss = psutil.Process(unit["pid"]).memory_info().rss
    assert shell_rss < 20 * MB  # the main process alone is small: the tree is what counts

    def busy() -> dict | None:
        hungry = _status_json(cli_daemon)["hungry"]
        return hungry if hungry["cpu_percent"] and hungry["cpu_percent"] > 5 else None

    hungry = wait_for(busy, 30, "the child's CPU to show", interval=0.5)
    assert hungry["memory_bytes"] >= 80 * MB
    assert isinstance(hungry["memory_bytes"], int)
    idle = _status_json(cli_daemon)["idle"]
    assert idle["state"] == "inactive" and idle["cpu_percent"] is None
    assert idle["memory_bytes"] is None

    table = cli_daemon.ctl("status", check=True).stdout
    header = table.splitlines()[0]
    assert "CPU" in header and "MEM" in header
    row = next(line for line in table.splitlines() if line.startswith("hungry"))
    assert re.search(r"\d+\.\d%", row) and re.search(r"\d+(\.\d)?M", row)

    metrics = cli_daemon.client.request("GET", "/metrics").text
    cpu = re.search(r'llm_supervisor_unit_cpu_percent\{unit="hungry.service"\} (\S+)', metrics)
    memory = re.search(r'llm_supervisor_unit_memory_bytes\{unit="hungry.service"\} (\S+)',
                       metrics)
    assert cpu and memory and float(memory.group(1)) >= 80 * MB
    assert 'llm_supervisor_unit_memory_bytes{unit="idle.service"}' not in metrics


def test_cpu_percent_is_the_rate_between_two_looks():
    """A process that burned CPU and now sleeps: the first look is its lifetime average (as
    ``ps``), the second the rate since the first, about 0."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c",
                             "import time\nwhile time.process_time() < 0.5: pass\n"
                             "print('done', flush=True)\ntime.sleep(30)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
        sampler = ProcessTreeSampler()
        first = sampler.sample(proc.pid)
        process = psutil.Process(proc.pid)
        times = process.cpu_times()
        lifetime = (times.user + times.system) / (time.time() - process.create_time()) * 100
        assert first.cpu_percent is not None and first.cpu_percent > 5
        assert abs(first.cpu_percent - lifetime) < max(5.0, lifetime * 0.2)
        time.sleep(0.5)
        second = sampler.sample(proc.pid)
        assert second.cpu_percent is not None and second.cpu_percent < 5
    finally:
        proc.kill()
        proc.wait()
    assert sampler.sample(proc.pid).cpu_percent is None  # gone: not running


@pytest.mark.slow
def test_container_stats_through_the_engine(tmp_path: Path, docker_client: Any,
                                           busybox_image: str):
    client, tag = docker_client, busybox_image
    container = client.containers.run(
        tag, ["sh", "-c", "head -c 60000000 /dev/zero | cat > /dev/shm/x 2>/dev/null; "
              "yes > /dev/null"],
        detach=True, name=f"llm-cli-stats-{uuid.uuid4().hex[:8]}", labels={"llm-test": "cli"})
    try:
        usage, counters = container_usage(container, None)
        assert usage.memory_bytes is not None and usage.memory_bytes > 0
        time.sleep(1.5)
        usage, _ = container_usage(container, counters)
        assert usage.cpu_percent is not None and usage.cpu_percent > 5  # `yes` burns a core
        sampler = ContainerSampler()
        wait_for(lambda: sampler.sample(container).memory_bytes, 30, "sampled container stats")
    finally:
        container.remove(force=True)
