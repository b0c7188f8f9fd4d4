"""The daemon's lighter machinery gives the same answers as the tools it replaced: the one-pass
process table agrees with psutil on real processes (parent, CPU seconds, RSS, start time); a
tree's CPU and memory sum a real parent and child; the bare-socket TCP probe passes on a
listening port and fails with the ``open_connection`` wording on a closed one."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import psutil
import pytest

from llm_supervisor.supervisor import listening_sockets
from llm_supervisor.supervisor.process_table import read_table
from llm_supervisor.supervisor.resources import ProcessTreeSampler
from llm_supervisor.supervisor.tcp_probe import port_open

BURN_THEN_SLEEP = ("import time, subprocess, sys\n"
                   "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                   "while time.process_time() < 0.3: pass\n"
                   "print(child.pid, flush=True)\ntime.sleep(60)\n")


@pytest.fixture()
def parent_and_child():
    proc = subprocess.Popen([sys.executable, "-c", BURN_THEN_SLEEP], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    child_pid = int(proc.stdout.readline())
    yield proc.pid, child_pid
    psutil.Process(child_pid).kill()
    proc.kill()
    proc.wait()


def test_process_table_agrees_with_psutil(parent_and_child):
    parent, child = parent_and_child
    table = read_table()
    for pid in (parent, child):
        entry, process = table.entries[pid], psutil.Process(pid)
        times = process.cpu_times()
        assert entry.ppid == process.ppid()
        assert abs(entry.cpu_seconds - (times.user + times.system)) < 0.05
        assert abs(entry.rss - process.memory_info().rss) < 2 * 1024 * 1024
        assert abs(entry.started - process.create_time()) < 0.05
    assert child in table.children[parent]
    assert table.entries[parent].cpu_seconds >= 0.25  # clock ticks round down


def test_tree_sums_parent_and_child(parent_and_child):
    parent, child = parent_and_child
    sampler = ProcessTreeSampler()
    usage = sampler.sample(parent)
    rss = psutil.Process(parent).memory_info().rss + psutil.Process(child).memory_info().rss
    assert usage.memory_bytes is not None and abs(usage.memory_bytes - rss) < 4 * 1024 * 1024
    assert usage.cpu_percent is not None and usage.cpu_percent > 0  # the burn, as a lifetime avg
    time.sleep(0.6)
    assert (sampler.sample(parent).cpu_percent or 0) < 5  # both sleep now
    child_rss = psutil.Process(child).memory_info().rss
    assert abs((sampler.sample(child).memory_bytes or 0) - child_rss) < 2 * 1024 * 1024


def test_tcp_probe_open_and_closed_ports():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    asyncio.run(port_open("127.0.0.1", port))
    asyncio.run(port_open("localhost", port))  # a name goes through the resolver
    listener.close()
    time.sleep(listening_sockets.TTL_S)  # the shared table of listening sockets is that old
    with pytest.raises(ConnectionRefusedError, match=r"Connect call failed \('127.0.0.1'"):
        asyncio.run(port_open("127.0.0.1", port))
    with pytest.raises(OverflowError):
        asyncio.run(port_open("127.0.0.1", 70000))
