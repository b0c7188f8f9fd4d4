"""Built-in plugin: the gateway's config follows the units, and the test desktop's details.

- ``gateway_routes``: every unit's ``[Route]`` becomes a route (other plugins may add theirs).
- ``supervisor_started``: writes Caddy and Traefik config into ``STATE_DIR/gateway/`` before any
  unit starts, then re-renders whenever units change (reload, new template instances). A running
  Caddy gets the new config through its admin API (``POST /load``, no restart); Traefik's file
  provider watches its directory, so writing the file is the reload.
- ``control_routes``: ``GET /gateway`` (program, listen address, routes, files) and
  ``GET /novnc`` (URL and password for ``llm-supervisorctl novnc``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from llm_supervisor.gateway import caddy
from llm_supervisor.gateway.files import write_all
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route, merge_routes, routes_from_units
from llm_supervisor.plugins.hookspecs import hookimpl

log = structlog.get_logger("llm_supervisor.gateway")

GATEWAY_UNIT = "gateway.service"


class _Gateway:
    """Per-daemon state: the manager, the last routes written, the watcher task."""

    def __init__(self) -> None:
        self.manager: Any = None
        self.options: GatewayOptions | None = None
        self.routes: list[Route] = []
        self.task: asyncio.Task[None] | None = None
        self._caddy_config: dict[str, Any] | None = None
        self._pushed: dict[str, Any] | None = None

    def program(self) -> str:
        return self.manager.settings.resolved_gateway_program if self.manager else "caddy"

    def sync(self) -> bool:
        """Recompute routes and rewrite files; True when the Caddy config changed."""
        assert self.manager is not None and self.options is not None
        units = list(self.manager.loaded.units.values())
        routes = merge_routes(self.manager.hooks.call("gateway_routes", units=units))
        result = write_all(routes, self.options)
        if routes != self.routes or any(result["changed"].values()):
            log.info("gateway_config_written", program=self.program(),
                     routes=[f"{r.path_prefix} -> {', '.join(r.upstreams)}" for r in routes],
                     directory=str(self.options.directory))
        self.routes = routes
        self._caddy_config = result["caddy_config"]
        return result["changed"]["caddy"]

    def gateway_running(self) -> bool:
        runner = self.manager.runners.get(GATEWAY_UNIT) if self.manager else None
        return runner is not None and str(runner.state) in ("running", "starting") and \
            runner.pid is not None

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

    async def watch(self) -> None:
        """Re-render on every reload, and on state changes (template instances appear then)."""
        queue = self.manager.subscribe()
        try:
            while True:
                event = await queue.get()
                if event.get("type") not in ("reload", "state"):
                    continue
                try:
                    changed = self.sync()
                except Exception as exc:  # never let the watcher die
                    log.error("gateway_config_failed", error=str(exc), error_type=type(exc).__name__)
                    continue
                if changed or (event.get("type") == "state" and event.get("unit") == "gateway"
                               and event.get("to") == "running"):
                    await self.push_to_caddy()
        finally:
            self.manager.unsubscribe(queue)


_STATE = _Gateway()


@hookimpl
def gateway_routes(units: list[Any]) -> list[dict[str, Any]]:
    return routes_from_units(units)


@hookimpl
def supervisor_started(manager: Any) -> None:
    _STATE.manager = manager
    _STATE.options = GatewayOptions.from_settings(manager.settings)
    _STATE._pushed = None
    _STATE.sync()
    # The file Caddy starts from is the current config, so there is nothing to push yet.
    _STATE._pushed = _STATE._caddy_config
    _STATE.task = asyncio.get_running_loop().create_task(_STATE.watch(), name="gateway-config")


@hookimpl
def supervisor_stopping(manager: Any) -> None:
    if _STATE.task is not None:
        _STATE.task.cancel()
        _STATE.task = None


@hookimpl
def control_routes(app: Any, manager: Any) -> None:
    from sanic import Request, response

    @app.get("/gateway")
    async def gateway_info(request: Request) -> response.HTTPResponse:
        options = GatewayOptions.from_settings(manager.settings)
        return response.json({
            "program": manager.settings.resolved_gateway_program,
            "url": f"http://{_display_host(options.listen_host)}:{options.port}/",
            # Caddy's admin API is a Unix socket (0700 directory); Traefik's dashboard is TCP.
            "admin_url": (f"unix:{options.admin_socket}"
                          if manager.settings.resolved_gateway_program == "caddy"
                          else options.admin_url),
            "routes": [route.as_dict() for route in _STATE.routes],
            "files": {"caddy": str(options.caddy_config),
                      "traefik_static": str(options.traefik_static),
                      "traefik_dynamic": str(options.traefik_dynamic)},
        })

    @app.get("/novnc")
    async def novnc_info(request: Request) -> response.HTTPResponse:
        from llm_supervisor.desktop.info import novnc_info as info

        data = await asyncio.to_thread(info, manager.settings)
        with contextlib.suppress(KeyError):
            runner = manager.runners["novnc.service"]
            data["state"] = str(runner.state)
            data["reason"] = runner.reason
        return response.json(data)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
