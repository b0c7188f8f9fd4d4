"""Built-in plugin: many models behind one endpoint (docs/models.md).

- ``supervisor_started``: read the catalog, make the :class:`Activator` (memory budget,
  keep-alive reaper) and start the :class:`ModelRouter` on 127.0.0.1:MODELS_ROUTER_PORT. Only
  when the stack has a model service (``model-service.service``): the catalog extends it.
- ``gateway_routes``: ``/v1`` and ``/api/generate`` go to the router (longer prefixes than the
  model service's ``/api``, so the test page and ``/api/health`` still reach it directly).
- ``unit_state_changed``: a model whose unit went down is no longer "loaded".
- ``control_routes``: ``GET /models``, ``POST /models/{name}/load|unload``,
  ``GET /models/metrics`` (Prometheus text, per model) on the control socket.

Security: the router is part of the daemon and listens on loopback only; it offers exactly what
a client of the gateway could already cause (loading a catalog model by asking for it) and no
control verb. Loading/unloading by name, and everything else, stays on the 0600 control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import structlog

from llm_supervisor.gateway.model_router import ModelRouter
from llm_supervisor.model_server.settings import ModelServerSettings
from llm_supervisor.model_server.sources.offline import find_offline_gguf
from llm_supervisor.model_server.weights.estimate import (
    BITS_PER_WEIGHT,
    ENGINE_OVERHEAD_BYTES,
    EstimateError,
    estimate_gguf,
    estimate_path,
)
from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.supervisor.activation import ActivationError, Activator, MeasuredSizes
from llm_supervisor.supervisor.memory_budget import available_memory, parse_budget
from llm_supervisor.units.catalog import DEFAULT_MODEL_UNIT, ModelEntry, load_catalog
from llm_supervisor.units.model_units import model_dir, model_ports

if TYPE_CHECKING:
    from sanic import Sanic

    from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.models")
GATEWAY_UNIT = "gateway.service"
DEFAULT_N_CTX = ModelServerSettings.model_fields["llama_n_ctx"].default


class ViewUnits:
    """:class:`ModelUnits` over the supervisor's view."""

    def __init__(self, supervisor: SupervisorView):
        self.supervisor = supervisor

    def unit_state(self, unit: str) -> str:
        status = self.supervisor.unit_status(unit)
        return str(status["state"]) if status is not None else "missing"

    def unit_reason(self, unit: str) -> str:
        status = self.supervisor.unit_status(unit)
        return str(status["reason"]) if status is not None else f"{unit} is not loaded"

    def start_unit(self, unit: str, reason: str) -> None:
        """A deliberate start, like ``systemctl start``: the start limit counts the crash
        restarts after it, not the activations of a model swapped in and out on demand (the
        manager clears the start limit of the unit a start names)."""
        self.supervisor.start_unit(unit, reason)

    async def stop_unit(self, unit: str, reason: str) -> None:
        await self.supervisor.stop_unit(unit, reason)

    def unit_rss(self, unit: str) -> int | None:
        status = self.supervisor.unit_status(unit)
        pid = status["pid"] if status is not None else None
        if not pid:
            return None
        try:
            process = psutil.Process(pid)
            return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
        except psutil.Error:
            return None


def make_estimator(settings: Any) -> Any:
    """(estimate, floor) of a catalog model: from its file when it exists, else from the file
    it will be made from (the offline GGUF, scaled by bits per weight when requantized)."""

    def estimate(entry: ModelEntry) -> tuple[int, int]:
        context = DEFAULT_N_CTX if entry.is_default else entry.context_size
        where = settings.effective_model_path if entry.is_default else \
            model_dir(entry, settings.state_dir)
        try:
            found = estimate_path(Path(where), context)
        except (EstimateError, OSError, ValueError, KeyError):
            gguf = find_offline_gguf()
            if entry.source.kind not in ("offline", "default") or gguf is None:
                return ENGINE_OVERHEAD_BYTES, 0  # unknown until its first load measures it
            bits = BITS_PER_WEIGHT.get(entry.source.quant or "Q4_1", 5.0)
            found = estimate_gguf(gguf, context, bits / BITS_PER_WEIGHT["Q4_1"])
        return found.total, found.weights + found.kv_cache

    return estimate


class ModelsPlugin:
    def __init__(self) -> None:
        self.activator: Activator | None = None
        self.router: ModelRouter | None = None
        self.error: str | None = None
        self.replicas = 1
        self.supervisor: SupervisorView | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @hookimpl
    def supervisor_started(self, supervisor: SupervisorView) -> None:
        self.supervisor = supervisor
        if supervisor.unit_status(DEFAULT_MODEL_UNIT) is None:
            return
        settings = supervisor.settings
        self.replicas = settings.model_replicas
        if self.replicas > 1:
            log.warning("model_router_not_routed", reason="MODEL_REPLICAS > 1: the gateway "
                        "balances /api and /v1 over the replicas of the default model; catalog "
                        "models are reachable on MODELS_ROUTER_PORT only")
        catalog = load_catalog(settings.model_catalog_dirs)
        for error in catalog.errors:
            log.error("model_file_error", **error.as_dict())
        try:
            budget = parse_budget(settings.model_memory_budget, available_memory())
        except ValueError as exc:
            self.error = str(exc)
            log.error("model_budget_invalid", error=self.error)
            budget = parse_budget("", available_memory())
        ports = model_ports(catalog, settings.resolved_models_port_base,
                            settings.model_service_port)
        self.activator = Activator(
            catalog, ports, ViewUnits(supervisor), make_estimator(settings), budget,
            MeasuredSizes(settings.state_dir / "models" / "measured.json"),
            queue_max=settings.model_queue_max, wait_timeout=settings.model_activation_timeout)
        self.router = ModelRouter(self.activator, "127.0.0.1", settings.resolved_models_router_port)
        self._tasks = [asyncio.ensure_future(self._serve()),
                       asyncio.ensure_future(self.activator.reap_idle())]
        log.info("models_ready", models=catalog.names(), budget_bytes=budget,
                 router=f"127.0.0.1:{self.router.port}")

    async def _serve(self) -> None:
        assert self.router is not None
        try:
            await self.router.start()
        except OSError as exc:
            self.error = (f"the model router cannot listen on 127.0.0.1:{self.router.port} "
                          f"({exc.strerror or exc}); set MODELS_ROUTER_PORT to a free port")
            log.error("model_router_unavailable", error=self.error)

    @hookimpl
    def supervisor_stopping(self, supervisor: SupervisorView) -> None:
        for task in self._tasks:
            task.cancel()
        if self.router is not None:
            asyncio.ensure_future(self.router.close())
        if self.activator is not None:
            asyncio.ensure_future(self.activator.close())

    @hookimpl
    def unit_state_changed(self, unit: Unit, old: str, new: str, reason: str) -> None:
        if self.activator is None:
            return
        if unit.name == DEFAULT_MODEL_UNIT and str(new) == "starting":
            self._follow_default_port(unit)
        self.activator.unit_changed(unit.name, str(new))

    def _follow_default_port(self, unit: Unit) -> None:
        """The heal plugin may move a taken MODEL_SERVICE_PORT (unit_environment): the router
        sends the default model's requests where this start of it listens."""
        status = self.activator.status.get("default") if self.activator else None
        if status is None or self.supervisor is None:
            return
        with contextlib.suppress(Exception):  # an unreadable EnvironmentFile: keep the port
            port = self.supervisor.environment_for(unit).get("MODEL_SERVICE_PORT")
            if port and port.isdigit():
                status.upstream = f"http://127.0.0.1:{port}"

    @hookimpl
    def gateway_routes(self, units: list[Unit]) -> list[dict[str, Any]]:
        # With MODEL_REPLICAS > 1 the gateway keeps balancing /api and /v1 over the replicas
        # (rolling restarts stay lossless); the router then serves only on its own port. A
        # gateway in a container cannot reach the router on the host's loopback: it keeps
        # sending /api and /v1 to the default model's container (docs/models.md).
        if self.router is None or self.replicas > 1 or \
                not any(u.name == DEFAULT_MODEL_UNIT for u in units) or \
                (self.supervisor is not None and self.supervisor.runtime_of(GATEWAY_UNIT) == "docker"):
            return []
        upstream = f"http://127.0.0.1:{self.router.port}"
        return [{"name": "models", "path_prefix": prefix, "upstreams": [upstream],
                 "health_path": None, "strip_prefix": False}
                for prefix in ("/v1", "/api/generate")]

    @hookimpl
    def control_routes(self, app: Sanic, supervisor: SupervisorView) -> None:
        from sanic import Request, response

        def unavailable() -> response.HTTPResponse:
            return response.json({"error": {"message": self.error or "no model catalog: the "
                                            "stack has no model-service unit"}}, status=404)

        @app.get("/models")
        async def models(request: Request) -> response.HTTPResponse:
            if self.activator is None:
                return unavailable()
            return response.json({"models": self.activator.views(),
                                  "budget_bytes": self.activator.budget,
                                  "router": f"127.0.0.1:{self.router.port}" if self.router
                                  else None, "error": self.error,
                                  "catalog_errors": [str(e) for e in
                                                     self.activator.catalog.errors]})

        @app.post("/models/<name>/<verb:load|unload>")
        async def model_verb(request: Request, name: str, verb: str) -> response.HTTPResponse:
            if self.activator is None:
                return unavailable()
            try:
                view = await (self.activator.load(name) if verb == "load"
                              else self.activator.unload(name))
            except ActivationError as exc:
                status = exc.status if exc.status != 503 else 409
                return response.json({"error": {"message": str(exc), "type": exc.kind}},
                                     status=status)
            return response.json(view)

        @app.get("/models/metrics")
        async def model_metrics(request: Request) -> response.HTTPResponse:
            if self.activator is None:
                return unavailable()
            return response.text(prometheus_text(self.activator.views()),
                                 content_type="text/plain; version=0.0.4")


def prometheus_text(views: list[dict[str, Any]]) -> str:
    """Per-model counters and gauges in the Prometheus text format."""
    series = [
        ("llm_supervisor_model_requests_total", "counter", "Requests routed to the model",
         "requests"),
        ("llm_supervisor_model_loads_total", "counter", "Loads (activations) of the model", "loads"),
        ("llm_supervisor_model_evictions_total", "counter",
         "Times the model was stopped to make room", "evictions"),
        ("llm_supervisor_model_in_flight", "gauge", "Requests being served", "in_flight"),
        ("llm_supervisor_model_waiting", "gauge", "Requests waiting for the model to load",
         "waiting"),
        ("llm_supervisor_model_memory_bytes", "gauge", "Measured RSS (estimate before the first "
         "load)", "estimate_bytes"),
        ("llm_supervisor_model_load_seconds", "gauge", "Duration of the last load",
         "load_seconds"),
    ]
    lines = []
    for name, kind, text, key in series:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for view in views:
            value = view.get("measured_bytes") or view.get(key) if key == "estimate_bytes" \
                else view.get(key)
            if value is not None:
                lines.append(f'{name}{{model="{view["id"]}"}} {float(value)}')
    lines += ["# HELP llm_supervisor_model_loaded 1 when the model is loaded",
              "# TYPE llm_supervisor_model_loaded gauge"]
    lines += [f'llm_supervisor_model_loaded{{model="{v["id"]}",state="{v["state"]}"}} '
              f'{1.0 if v["state"] == "loaded" else 0.0}' for v in views]
    lines.append(f"# generated {time.time():.0f}")
    return "\n".join(lines) + "\n"


def make_plugin() -> ModelsPlugin:
    return ModelsPlugin()

