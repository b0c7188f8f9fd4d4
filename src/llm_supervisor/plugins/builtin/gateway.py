"""Built-in plugin: the gateway's config follows the units, and the test desktop's details.

- ``gateway_routes``: every unit's ``[Route]`` becomes a route (other plugins may add theirs).
- ``supervisor_started``: writes Caddy and Traefik config into ``STATE_DIR/gateway/`` before any
  unit starts, then re-renders whenever units change (reload, new template instances). A running
  Caddy gets the new config through its admin API (``POST /load``, no restart); Traefik's file
  provider watches its directory, so writing the file is the reload.
- ``unit_rotation_changed``: a rolling restart took a replica out or put it back; the returned
  awaitable ends once the gateway acts on it.
- ``gateway_info`` and ``control_routes`` (``GET /gateway``): program and version, listen
  address, routes, files, API keys, and the running gateway's own view of its routers and
  servers (:mod:`..gateway.live`).

Each daemon gets its own :class:`GatewayPlugin` (``make_plugin``); its state lives there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import structlog

from llm_supervisor.config import gateway_program
from llm_supervisor.gateway import caddy, docker_mode, live
from llm_supervisor.gateway.auth_server import AuthServer
from llm_supervisor.gateway.files import write_all
from llm_supervisor.gateway.guard import guard
from llm_supervisor.gateway.keys_setup import start_api_key_check
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route, merge_routes, routes_from_units, serving_or_all
from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.units.model import Unit

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sanic import Sanic

log = structlog.get_logger("llm_supervisor.gateway")

GATEWAY_UNIT = "gateway.service"
# Traefik's file provider reloads on a file event; this long covers it on a loaded machine.
TRAEFIK_SETTLE_S = 2.0
CADDY_CHECK_MARGIN_S = 0.5


class GatewayPlugin:
    """Per-daemon state: the supervisor's view, the last routes written, the watcher task."""

    def __init__(self) -> None:
        self.supervisor: SupervisorView | None = None
        self.options: GatewayOptions | None = None
        self.routes: list[Route] = []
        self.task: asyncio.Task[None] | None = None
        self.auth: AuthServer | None = None
        self._warned_docker_keys = False
        self._caddy_config: dict[str, Any] | None = None
        self._pushed: dict[str, Any] | None = None
        # One sync-and-push at a time: a rolling restart's push must not be overtaken by an
        # older config the watcher computed just before.
        self._applying = asyncio.Lock()

    def program(self) -> str:
        return self.supervisor.settings.resolved_gateway_program if self.supervisor else "caddy"

    def sync(self) -> bool:
        """Recompute routes and rewrite files; True when the Caddy config changed."""
        assert self.supervisor is not None and self.options is not None
        units = list(self.supervisor.units().values())
        routes = merge_routes(self.supervisor.gateway_routes(units))
        program = self.program()  # once: it looks for the binary on disk
        serving = [unit for unit in units if self._in_rotation(unit.name, program)]
        if len(serving) < len(units):  # Traefik only, see _in_rotation
            routes = serving_or_all(
                routes, merge_routes(self.supervisor.gateway_routes(serving)))
        if self.options.auth_url:
            routes = guard(routes)
        result = write_all(routes, self.options)
        if routes != self.routes or any(result["changed"].values()):
            log.info("gateway_config_written", program=program,
                     routes=[f"{r.path_prefix} -> {', '.join(r.upstreams)}" for r in routes],
                     directory=str(self.options.directory))
        self.routes = routes
        self._caddy_config = result["caddy_config"]
        in_docker = [unit for name, unit in self.supervisor.units().items()
                     if self.supervisor.runtime_of(name) == "docker"]
        if in_docker:  # the gateway container's config: upstreams are container names
            docker_mode.write(routes, self.options, docker_mode.published_ports(in_docker))
            if self.options.auth_url and not self._warned_docker_keys and any(
                    unit.name == GATEWAY_UNIT for unit in in_docker):
                self._warned_docker_keys = True
                log.warning("api_keys_not_enforced", reason="the gateway runs in a container, "
                            "which cannot reach the key check on the host's loopback",
                            hint="run the gateway as a process (the default), or keep "
                                 "BIND_ADDRESS=127.0.0.1")
        return result["changed"]["caddy"]

    def _in_rotation(self, name: str, program: str) -> bool:
        """Whether a unit taken out by a rolling restart (:mod:`..supervisor.rotation`) is left
        out of the config. Only for Traefik, which reloads its file gracefully: Caddy 2.6 cancels
        every proxied request in flight on a config load (caddyserver/caddy#5663), so Caddy's
        config keeps every replica and its active health check takes a draining or loading one
        out (``expect_body`` ready, :mod:`..gateway.caddy`)."""
        assert self.supervisor is not None
        return program != "traefik" or self.supervisor.in_rotation(name)

    async def apply_now(self) -> None:
        """After a rolling restart took a replica out or put it back: return once the gateway
        acts on it. Traefik: a rewritten file and its reload; Caddy: one more active health check
        of the replicas (a draining server says so in its health, a restarted one is ready)."""
        assert self.options is not None
        if self.program() == "traefik":
            async with self._applying:
                self.sync()
            if self.gateway_running():
                await asyncio.sleep(TRAEFIK_SETTLE_S)
        elif self.gateway_running():
            await asyncio.sleep(self.options.replica_health_interval_s
                                + self.options.health_timeout_s + CADDY_CHECK_MARGIN_S)

    def gateway_running(self) -> bool:
        status = self.supervisor.unit_status(GATEWAY_UNIT) if self.supervisor else None
        return status is not None and status["state"] in ("running", "starting") and \
            status["pid"] is not None

    async def push_to_caddy(self) -> None:
        """Load the current config into a running Caddy. A Caddy that is not up yet reads the file
        when it starts, so failures here are only logged."""
        if self.program() != "caddy" or self._caddy_config is None or not self.gateway_running():
            return
        if self._pushed == self._caddy_config:
            return
        assert self.options is not None
        try:
            await caddy.load(self._caddy_config, self.options)
        except Exception as exc:
            log.warning("gateway_reload_failed", program="caddy", error=str(exc),
                        hint="the new config is on disk and applies at the next gateway start")
            return
        self._pushed = self._caddy_config
        log.info("gateway_reloaded", program="caddy", routes=len(self.routes))

    async def watch(self, supervisor: SupervisorView) -> None:
        """Re-render on every reload, and on state changes (template instances appear then).

        The events queued meanwhile are taken together and answered by one render: a thousand
        units coming up are thousands of state changes, and one render per change (each a pass
        over every unit and a file write) kept the event loop busy for most of their start."""
        queue = supervisor.subscribe()
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                relevant = [e for e in batch if e.get("type") in ("reload", "state")]
                if not relevant:
                    continue
                gateway_up = any(e.get("type") == "state" and e.get("unit") == "gateway"
                                 and e.get("to") == "running" for e in relevant)
                async with self._applying:
                    try:
                        changed = self.sync()
                    except Exception as exc:  # never let the watcher die
                        log.error("gateway_config_failed", error=str(exc),
                                  error_type=type(exc).__name__)
                        continue
                    if changed or gateway_up:
                        await self.push_to_caddy()
        finally:
            supervisor.unsubscribe(queue)

    @hookimpl
    def gateway_routes(self, units: list[Unit]) -> list[dict[str, Any]]:
        return routes_from_units(units)

    @hookimpl
    def supervisor_started(self, supervisor: SupervisorView) -> None:
        self.supervisor = supervisor
        self.options = GatewayOptions.from_settings(supervisor.settings)
        self.auth = start_api_key_check(supervisor.settings)
        if self.auth is not None:
            self.options = dataclasses.replace(self.options, auth_url=self.auth.url)
        self._pushed = None
        self.sync()
        # The file Caddy starts from is the current config, so there is nothing to push yet.
        self._pushed = self._caddy_config
        self.task = asyncio.get_running_loop().create_task(self.watch(supervisor),
                                                           name="gateway-config")

    @hookimpl
    def supervisor_stopping(self, supervisor: SupervisorView) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.auth is not None:
            asyncio.get_running_loop().create_task(self.auth.close())
            self.auth = None

    @hookimpl
    def unit_rotation_changed(self, unit: Unit, serving: bool) -> Awaitable[None] | None:
        return self.apply_now() if self.options is not None else None

    @hookimpl
    def gateway_info(self) -> dict[str, Any] | None:
        if self.supervisor is None:
            return None
        settings = self.supervisor.settings
        options = GatewayOptions.from_settings(settings)
        return {
            "program": settings.resolved_gateway_program,
            "url": f"http://{_display_host(options.listen_host)}:{options.port}/",
            # Caddy's admin API is a Unix socket (0700 directory); Traefik's is TCP.
            "admin_url": (f"unix:{options.admin_socket}"
                          if settings.resolved_gateway_program == "caddy" else options.admin_url),
            "routes": [route.as_dict() for route in self.routes],
            "api_keys": ({"file": str(self.auth.ring.path), "allowed": self.auth.allowed,
                          "refused": self.auth.refused} if self.auth else None),
            "files": {"caddy": str(options.caddy_config),
                      "traefik_static": str(options.traefik_static),
                      "traefik_dynamic": str(options.traefik_dynamic)},
        }

    @hookimpl
    def control_routes(self, app: Sanic, supervisor: SupervisorView) -> None:
        from sanic import Request, response

        @app.get("/gateway")
        async def gateway_info(request: Request) -> response.HTTPResponse:
            info = self.gateway_info() or {}
            program = info.get("program", "")
            running = self.gateway_running()
            ask_live = running and request.args.get("live") != "0" and self.options is not None
            return response.json({
                **info,
                # `traefik version` once (cached), off the event loop.
                "version": await asyncio.to_thread(gateway_program.program_version, program),
                "executable": supervisor.settings.gateway_executable,
                "running": running,
                # The gateway's own view of its routers/services (Traefik: UP/DOWN per server).
                "live": await live.gateway_state(program, GatewayOptions.from_settings(
                    supervisor.settings)) if ask_live else None,
            })


def make_plugin() -> GatewayPlugin:
    return GatewayPlugin()


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
