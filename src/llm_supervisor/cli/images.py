"""``llm-supervisorctl images build [UNIT...]``: build the stack's images here, without the daemon
(it talks to the Docker engine directly, as the daemon's docker runtime does)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from llm_supervisor.runtimes.base import RuntimeError_


def build(units_wanted: Sequence[str] = (), quiet: bool = False) -> int:
    from llm_supervisor.config import load_settings
    from llm_supervisor.config.settings import PROJECT_DIR
    from llm_supervisor.runtimes.docker import labels
    from llm_supervisor.runtimes.docker.errors import connect
    from llm_supervisor.runtimes.docker.stack_images import build_stack
    from llm_supervisor.units.loader import load_directory
    from llm_supervisor.units.model import normalise_name

    settings = load_settings()
    loaded = load_directory(settings.units_dir, settings.expansion_vars())
    units = loaded.units
    if units_wanted:
        names = {normalise_name(n) for n in units_wanted}
        missing = names - set(units)
        if missing:
            print(f"images: no such unit: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
        units = {n: u for n, u in units.items() if n in names}
    started = time.monotonic()

    def output(line: str) -> None:
        if not quiet or not line.startswith(("Step ", " ---> ", "Removing intermediate")):
            print(line, flush=True)

    try:
        client = connect()
        base = settings.vars.get("BASE_IMAGE") or os.environ.get("BASE_IMAGE") or None
        results = build_stack(client, units, labels.owner_id(settings.state_dir), PROJECT_DIR,
                              base, output, standalone=not units_wanted)
    except RuntimeError_ as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(f"{result.unit}: {result.tag} ({result.image_id[7:19]})")
    print(f"{len(results)} image(s) ready in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-supervisorctl images")
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="build every image of the stack (a local Debian "
                                                "base first, when none exists)")
    build_parser.add_argument("units", nargs="*", help="only these units' images")
    build_parser.add_argument("-q", "--quiet", action="store_true",
                              help="no per-step build output")
    args = parser.parse_args(argv)
    return build(args.units, args.quiet)
