"""One step of ``make setup``/``make run``/``make test``, named and timed: minutes of silence
look like a hang, and the end of ``make test`` lists what each step cost.

    python3 src/llm_supervisor/core/setup_step.py "NAME" [--hint TEXT] -- COMMAND [ARGS...]
    python3 src/llm_supervisor/core/setup_step.py --summary [--since EPOCH_SECONDS]

The first form prints ``==> NAME`` (and the hint, e.g. "about 7 min on 2 cores"), runs COMMAND
with its output shown, then ``==> NAME: done in 1m05s`` or ``==> NAME: FAILED after 12s
(exit 1)``, and exits with COMMAND's status. When ``$LLM_SETUP_STEP_LOG`` names a file, it also
appends one line ``started<TAB>seconds<TAB>exit<TAB>name`` to it.

The second form prints that file's steps started at or after EPOCH_SECONDS as a table with the
total (the Makefile passes the time ``make`` started, so only this run's steps are listed).
Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

LOG_ENV = "LLM_SETUP_STEP_LOG"


def duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    return f"{whole // 60}m{whole % 60:02d}s"


def record(name: str, started: float, seconds: float, code: int) -> None:
    """Append the step to ``$LLM_SETUP_STEP_LOG`` (if set); never fails the step."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{started:.3f}\t{seconds:.3f}\t{code}\t{name}\n")
    except OSError as exc:
        print(f"(could not record the step's time in {path}: {exc})", file=sys.stderr)


def read_steps(path: Path, since: float) -> list[tuple[str, float, int]]:
    """(name, seconds, exit code) of the steps started at or after ``since``, in order."""
    steps = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t", 3)
        if len(fields) != 4:
            continue
        try:
            started, seconds, code = float(fields[0]), float(fields[1]), int(fields[2])
        except ValueError:
            continue
        if started >= since:
            steps.append((fields[3], seconds, code))
    return steps


def summary(since: float) -> int:
    path = os.environ.get(LOG_ENV)
    steps = read_steps(Path(path), since) if path and Path(path).is_file() else []
    print("==> time per step" + (f" (from {path})" if path else ""))
    if not steps:
        print("    no step ran: everything was already set up")
        return 0
    width = max(len(name) for name, _, _ in steps)
    for name, seconds, code in steps:
        status = "" if code == 0 else f"  FAILED (exit {code})"
        print(f"    {name:<{width}}  {duration(seconds):>7}{status}")
    print(f"    {'total':<{width}}  {duration(sum(s for _, s, _ in steps)):>7}")
    return 0


def run_step(name: str, hint: str, command: list[str]) -> int:
    print(f"==> {name}" + (f" ({hint})" if hint else ""), flush=True)
    started_wall, started = time.time(), time.monotonic()
    try:
        code = subprocess.call(command)
    except OSError as exc:
        print(f"==> {name}: FAILED: {exc}", flush=True)
        record(name, started_wall, time.monotonic() - started, 127)
        return 127
    seconds = time.monotonic() - started
    record(name, started_wall, seconds, code)
    if code == 0:
        print(f"==> {name}: done in {duration(seconds)}", flush=True)
    else:
        print(f"==> {name}: FAILED after {duration(seconds)} (exit {code})", flush=True)
    return code


def main(argv: list[str]) -> int:
    if argv[:1] == ["--summary"]:
        since = float(argv[2]) if len(argv) >= 3 and argv[1] == "--since" else 0.0
        return summary(since)
    if "--" not in argv or argv.index("--") == 0:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    head, command = argv[:split], argv[split + 1:]
    hint = head[2] if len(head) >= 3 and head[1] == "--hint" else ""
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    return run_step(head[0], hint, command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
