"""The one plugin manager: built-ins and third-party plugins come in through the same door.

Built-in plugins are listed in ``DEFAULT_PLUGINS`` (modules with a ``make_plugin()`` factory:
each daemon gets its own instances, no state in module globals); third-party plugins are found
through the ``llm_supervisor`` entry-point group. Hooks are called through pluggy
(``plugins.hook.unit_failed(unit=..., reason=...)``), so ``wrapper=True`` and ``hookwrapper=True``
implementations work as pluggy documents.

Isolation: in a plain pluggy call an implementation that raises aborts the whole call. Here every
implementation is wrapped when its plugin is registered, so one that raises is logged
(``plugin_error``) and counts as "no answer" (None); the other plugins still run and the daemon
goes on. A wrapper that raises before its ``yield`` steps aside (the call goes on without it);
one that raises in its teardown leaves the result as it was.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Generator
from typing import Any

import pluggy
import structlog

from llm_supervisor.plugins import hookspecs

DEFAULT_PLUGINS: tuple[str, ...] = (
    "llm_supervisor.plugins.builtin.event_log",
    "llm_supervisor.plugins.builtin.metrics",
    "llm_supervisor.plugins.builtin.gateway",
    "llm_supervisor.plugins.builtin.desktop",
    "llm_supervisor.plugins.builtin.model_repair",
    "llm_supervisor.plugins.builtin.models",
    "llm_supervisor.plugins.builtin.heal",
    "llm_supervisor.dashboard.plugin",
)

log = structlog.get_logger("llm_supervisor.plugins")


def _log_error(plugin: str, hook: str, exc: BaseException, where: str = "") -> None:
    log.error("plugin_error", plugin=plugin, hook=hook, error=str(exc),
              error_type=type(exc).__name__, **({"where": where} if where else {}))


def _isolated_call(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            _log_error(plugin, hook, exc)
            return None

    return call


def _isolated_wrapper(function: Callable[..., Any], plugin: str, hook: str
                      ) -> Callable[..., Generator[None, Any, Any]]:
    """The same generator protocol pluggy expects of ``wrapper``/``hookwrapper`` functions
    (one ``yield``; what is sent in is the result, or a ``Result`` for old-style wrappers)."""

    @functools.wraps(function)
    def wrap(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
        inner = function(*args, **kwargs)
        try:
            next(inner)
        except Exception as exc:  # also StopIteration: a wrapper that never yields
            _log_error(plugin, hook, exc, "before yield")
            return (yield)
        try:
            sent = yield
        except BaseException as exc:  # an inner implementation raised: the wrapper may handle it
            try:
                inner.throw(exc)
            except StopIteration as stop:
                return stop.value
            _log_error(plugin, hook, RuntimeError("wrapper yielded twice"), "teardown")
            raise
        try:
            inner.send(sent)
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            _log_error(plugin, hook, exc, "teardown")
            return sent
        _log_error(plugin, hook, RuntimeError("wrapper yielded twice"), "teardown")
        inner.close()
        return sent

    return wrap


class Plugins(pluggy.PluginManager):
    """The daemon's plugin manager; ``plugins.hook.<name>(**kwargs)`` calls a hook."""

    def __init__(self, extra_plugins: tuple[str, ...] = (), load_entry_points: bool = True):
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        for module_name in (*DEFAULT_PLUGINS, *extra_plugins):
            self.register_builtin(module_name)
        self.entry_point_errors: list[str] = []
        if load_entry_points:
            try:
                self.load_setuptools_entrypoints(hookspecs.PROJECT)
            except Exception as exc:  # a broken third-party package must not stop the daemon
                self.entry_point_errors.append(f"{type(exc).__name__}: {exc}")
                log.error("plugin_load_failed", error=str(exc), error_type=type(exc).__name__)

    def register_builtin(self, module_name: str) -> None:
        """A module with ``make_plugin()`` registers a fresh instance; any other module (a
        plugin written as plain functions) registers itself."""
        module = importlib.import_module(module_name)
        factory = getattr(module, "make_plugin", None)
        plugin = factory() if callable(factory) else module
        if self.get_plugin(module_name) is None:
            self.register(plugin, name=module_name)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if registered is None:  # blocked
            return None
        for caller in self.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    isolate = _isolated_wrapper if impl.wrapper or impl.hookwrapper else \
                        _isolated_call
                    impl.function = isolate(  # type: ignore[misc]  # pluggy marks it Final; wrapped on purpose
                        impl.function, impl.plugin_name, caller.name)
        return registered

    def describe(self) -> list[dict[str, Any]]:
        """Loaded plugins and the hooks each implements (``llm-supervisorctl plugins``)."""
        dists = {id(plugin): dist for plugin, dist in self.list_plugin_distinfo()}
        plugins = []
        for name, plugin in self.list_name_plugin():
            if plugin is None or name == hookspecs.PROJECT:
                continue
            hooks = sorted(caller.name for caller in self.get_hookcallers(plugin) or [])
            dist = dists.get(id(plugin))
            plugins.append({
                "name": name,
                "builtin": name in DEFAULT_PLUGINS or name.startswith("llm_supervisor."),
                "distribution": f"{dist.project_name} {dist.version}" if dist else None,
                "hooks": hooks,
            })
        return plugins
