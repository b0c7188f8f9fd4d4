"""Units and waits shared by the heal tests (real programs under a real in-process Manager)."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def hungry_unit(port: int, memory_max: str, context: int = 4096, kib_per_cell: int = 24,
                extra: str = "") -> str:
    """tests/heal/hungry.py: resident memory = context × slots × kib_per_cell KiB."""
    return f"""[Service]
ExecStart={sys.executable} -m tests.heal.hungry
Environment=LLAMA_N_CTX={context} MAX_BATCH_SIZE=1 KIB_PER_CELL={kib_per_cell} PORT={port}
Environment=PYTHONPATH={PROJECT}
MemoryMax={memory_max}
RestartSec=0.1
{extra}
[Health]
Check=http://127.0.0.1:{port}/
Interval=0.2
StartPeriod=30
[Install]
WantedBy=stack.target
"""
