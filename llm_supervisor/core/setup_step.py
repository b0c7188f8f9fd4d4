"""One step of ``make setup``/``make run``, named and timed: minutes of silence look like a hang.

    python3 llm_supervisor/core/setup_step.py "NAME" [--hint TEXT] -- COMMAND [ARGS...]

prints ``==> NAME`` (and the hint, e.g. "about 7 min on 2 cores"), runs COMMAND with its
output shown, then ``==> NAME: done in 1m05s`` or ``==> NAME: FAILED after 12s (exit 1)``, and
exits with COMMAND's status. Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import subprocess
import sys
import time


def duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    return f"{whole // 60}m{whole % 60:02d}s"


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == 0:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    head, command = argv[:split], argv[split + 1:]
    name, hint = head[0], ""
    if len(head) >= 3 and head[1] == "--hint":
        hint = head[2]
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"==> {name}" + (f" ({hint})" if hint else ""), flush=True)
    started = time.monotonic()
    try:
        code = subprocess.call(command)
    except OSError as exc:
        print(f"==> {name}: FAILED: {exc}", flush=True)
        return 127
    took = duration(time.monotonic() - started)
    if code == 0:
        print(f"==> {name}: done in {took}", flush=True)
    else:
        print(f"==> {name}: FAILED after {took} (exit {code})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
