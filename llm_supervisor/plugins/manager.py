"""The one plugin manager: built-ins and third-party plugins come in through the same door.

Built-in plugins are modules listed in ``DEFAULT_PLUGINS``; third-party plugins are found through
the ``llm_supervisor`` entry-point group. Hook calls are isolated per plugin: one that raises is
logged (``plugin_error``) and skipped, and the daemon goes on.
"""

from __future__ import annotations

import importlib
from typing import Any

import pluggy
import structlog

from llm_supervisor.plugins import hookspecs

DEFAULT_PLUGINS: tuple[str, ...] = (
    "llm_supervisor.plugins.builtin.event_log",
    "llm_supervisor.plugins.builtin.metrics",
    "llm_supervisor.plugins.builtin.gateway",
    "llm_supervisor.plugins.builtin.model_repair",
)

log = structlog.get_logger("llm_supervisor.plugins")


class Hooks:
    """Wraps the pluggy PluginManager with per-plugin error isolation."""

    def __init__(self, extra_plugins: tuple[str, ...] = (), load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for module_name in (*DEFAULT_PLUGINS, *extra_plugins):
            self.register_module(module_name)
        self.entry_point_errors: list[str] = []
        if load_entry_points:
            try:
                self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
            except Exception as exc:  # a broken third-party package must not stop the daemon
                self.entry_point_errors.append(f"{type(exc).__name__}: {exc}")
                log.error("plugin_load_failed", error=str(exc), error_type=type(exc).__name__)

    def register_module(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        if not self.pm.is_registered(module):
            self.pm.register(module, name=module_name)

    def register(self, plugin: object, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        # pluggy calls implementations last-registered first; keep that order.
        return list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))

    def _call_one(self, impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, Any]) -> Any:
        try:
            return impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:
            log.error("plugin_error", plugin=impl.plugin_name, hook=hook_name,
                      error=str(exc), error_type=type(exc).__name__)
            return None

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation; return the non-None results."""
        results = []
        for impl in self._impls(hook_name):
            result = self._call_one(impl, hook_name, kwargs)
            if result is not None:
                results.append(result)
        return results

    def call_first(self, hook_name: str, **kwargs: Any) -> Any:
        """firstresult semantics: the first non-None answer wins."""
        for impl in self._impls(hook_name):
            result = self._call_one(impl, hook_name, kwargs)
            if result is not None:
                return result
        return None

    def describe(self) -> list[dict[str, Any]]:
        """Loaded plugins and the hooks each implements (``llm-supervisorctl plugins``)."""
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        plugins = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None or name == hookspecs.PROJECT:
                continue
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            dist = dists.get(id(plugin))
            plugins.append({
                "name": name,
                "builtin": name in DEFAULT_PLUGINS or name.startswith("llm_supervisor."),
                "distribution": f"{dist.project_name} {dist.version}" if dist else None,
                "hooks": hooks,
            })
        return plugins
