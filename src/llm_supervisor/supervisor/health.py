"""Health probes: ``http://``, ``tcp://HOST:PORT`` and ``exec:COMMAND``.

An exec check runs as its unit's program does: with the unit's ``User=``/``Group=`` (never as
the daemon's root), from its ``WorkingDirectory=`` or ``/``, with ``PYTHONSAFEPATH=1``.

An HTTP probe passes on 2xx. When the body is JSON with ``status``/``progress`` (as the model
service answers while loading), the detail says so: ``loading 42%``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from dataclasses import dataclass
from typing import Any

import httpx

from llm_supervisor.runtimes.process import user as process_user
from llm_supervisor.runtimes.process.safe_start import safe_start
from llm_supervisor.supervisor.health_batch import PassingChecks
from llm_supervisor.supervisor.tcp_probe import accepting_now, port_open
from llm_supervisor.units.model import HealthSpec, Unit


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    latency_s: float


def _describe_json(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    status = body.get("status")
    progress = body.get("progress")
    parts = [str(status)] if status else []
    if isinstance(progress, int | float):
        parts.append(f"{progress * 100:.0f}%")
    if body.get("stage"):
        parts.append(f"({body['stage']})")
    return " ".join(parts)


def _describe_error(exc: BaseException) -> str:
    """``Type: message`` of what went wrong, looking inside an exception group (anyio wraps
    some transport errors in one) for the error itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".strip(": ")


class Prober:
    """Runs probes; one HTTP client shared by every unit's checks."""

    def __init__(self) -> None:
        # Plain-HTTP probes (the common case) use a client that never loads the CA bundle (a few
        # MB of daemon memory); an https:// check gets a verifying client on first use.
        self._plain = httpx.AsyncClient(trust_env=False, follow_redirects=False, verify=False)
        self._tls: httpx.AsyncClient | None = None
        self.passing = PassingChecks()  # healthy units' tcp:// checks, run together

    def _client_for(self, url: str) -> httpx.AsyncClient:
        if not url.startswith("https://"):
            return self._plain
        if self._tls is None:
            self._tls = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._tls

    async def probe(self, spec: HealthSpec, env: dict[str, str] | None = None,
                    unit: Unit | None = None) -> ProbeResult:
        """``unit``: whose identity and working directory an exec check takes."""
        started = time.perf_counter()
        if spec.kind == "tcp" and accepting_now(spec.target):
            return ProbeResult(True, "port open", time.perf_counter() - started)
        try:
            async with asyncio.timeout(spec.timeout):  # no extra task per probe, as wait_for made
                ok, detail = await self._run(spec, env, unit)
        except TimeoutError:
            ok, detail = False, f"timed out after {spec.timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - any probe error is a failed check
            # (OSError, httpx errors, httpx.InvalidURL which is neither, a bad port number):
            # the reason is shown and the health loop goes on.
            ok, detail = False, _describe_error(exc)
        return ProbeResult(ok, detail, time.perf_counter() - started)

    async def _run(self, spec: HealthSpec, env: dict[str, str] | None, unit: Unit | None
                   ) -> tuple[bool, str]:
        if spec.kind == "http":
            response = await self._client_for(spec.target).get(spec.target)
            described = _describe_json(response)
            detail = f"HTTP {response.status_code}" + (f" {described}" if described else "")
            return response.is_success, detail
        if spec.kind == "tcp":
            host, _, port = spec.target.rpartition(":")
            await port_open(host.strip("[]"), int(port))
            return True, "port open"
        argv, cwd, env, switch = _exec_identity(shlex.split(spec.target), env, unit)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True, **switch,
        )
        try:
            output, _ = await proc.communicate()
        except asyncio.CancelledError:  # timed out: the whole group, not just its leader
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: its pid is the pgid
            await proc.wait()
            raise
        last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return proc.returncode == 0, f"exit {proc.returncode}" + (f": {last[0][:200]}" if last[0]
                                                                  else "")

    async def close(self) -> None:
        await self.passing.close()
        await self._plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()


def _exec_identity(argv: list[str], env: dict[str, str] | None, unit: Unit | None
                   ) -> tuple[list[str], str, dict[str, str] | None, dict[str, Any]]:
    """``(argv, cwd, env, popen switch)`` for an exec check: the unit's account (its ambient
    capabilities too, through setpriv), working directory and safe interpreter settings."""
    if unit is None:
        return argv, "/", {**(env if env is not None else os.environ), "PYTHONSAFEPATH": "1"}, {}
    cwd, started = safe_start(unit, env if env is not None else os.environ)
    account = process_user.run_as(unit.user, unit.group, unit.ambient_capabilities)
    if account is None:
        return argv, cwd, started, {}
    prefix = process_user.setpriv_prefix(account, [])
    return [*prefix, *argv], cwd, account.environment(started), account.popen_kwargs()
