"""The hook caller: hooks go through pluggy (wrappers work), and a plugin that raises is logged
and isolated while the others still run. In-process, milliseconds each: real pluggy, real
plugins registered in the daemon's own :class:`Plugins`."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.manager import DEFAULT_PLUGINS, Plugins
from llm_supervisor.plugins.types import Diagnosis
from llm_supervisor.units.model import Unit


class _Unit:
    """Hooks only read ``name``; a real Unit needs a parsed file (see test_failure_path)."""

    name = "x.service"
    short_name = "x"


UNIT: Any = _Unit()


class Answers:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls = 0

    @hookimpl
    def diagnose_failure(self, unit: Unit) -> Diagnosis:
        self.calls += 1
        return Diagnosis(self.kind, "recognised")

    @hookimpl
    def gateway_routes(self) -> list[dict[str, Any]]:
        return [{"name": self.kind}]


class Raises:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def diagnose_failure(self) -> Diagnosis:
        self.calls += 1
        raise RuntimeError("clumsy plugin")

    @hookimpl
    def gateway_routes(self) -> list[dict[str, Any]]:
        raise ValueError("clumsy routes")

    @hookimpl
    def unit_failed(self, unit: Unit) -> None:
        raise KeyError("clumsy")


def _plugins(*plugins: object) -> Plugins:
    pm = Plugins(load_entry_points=False)
    for number, plugin in enumerate(plugins):
        pm.register(plugin, name=f"p{number}")
    return pm


def _errors(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["plugin"], e["hook"]) for e in logs if e["event"] == "plugin_error"]


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    structlog.reset_defaults()


def test_a_raising_plugin_is_logged_and_the_others_still_answer() -> None:
    first, raising = Answers("first"), Raises()
    pm = _plugins(first, raising)  # the last registered is called first
    with capture_logs() as logs:
        diagnosis = pm.hook.diagnose_failure(unit=UNIT, exit_code=1, log_tail=[])
        routes = pm.hook.gateway_routes(units=[])
        assert pm.hook.unit_failed(unit=UNIT, reason="r") == []
    assert diagnosis == Diagnosis("first", "recognised")
    assert raising.calls == 1 and first.calls == 1
    assert {"name": "first"} in [r for group in routes for r in group]
    assert _errors(logs) == [("p1", "diagnose_failure"), ("p1", "gateway_routes"),
                             ("p1", "unit_failed")]


def test_firstresult_stops_at_the_first_answer() -> None:
    later, earlier = Answers("later"), Answers("earlier")
    pm = _plugins(later, earlier)
    assert pm.hook.diagnose_failure(unit=UNIT, exit_code=1, log_tail=[]).kind == "earlier"
    assert later.calls == 0


class Wrapper:
    """A new-style ``wrapper=True`` impl: sees the answer and may change it."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(wrapper=True)
    def diagnose_failure(self, unit: Unit) -> Any:
        result = yield
        self.seen.append(result)
        return Diagnosis(f"wrapped-{result.kind}", result.summary) if result else None


class OldWrapper:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(hookwrapper=True)
    def gateway_routes(self) -> Any:
        outcome = yield
        self.seen.append(outcome.get_result())


def test_wrappers_wrap_and_are_not_taken_for_answers() -> None:
    wrapper, old = Wrapper(), OldWrapper()
    pm = _plugins(Answers("inner"), Raises(), wrapper, old)
    with capture_logs():
        diagnosis = pm.hook.diagnose_failure(unit=UNIT, exit_code=1, log_tail=[])
        routes = pm.hook.gateway_routes(units=[])
    assert diagnosis.kind == "wrapped-inner"
    assert wrapper.seen == [Diagnosis("inner", "recognised")]
    assert old.seen == [routes] and [{"name": "inner"}] in routes


class BrokenWrappers:
    @hookimpl(wrapper=True)
    def diagnose_failure(self) -> Any:
        raise RuntimeError("before yield")
        yield  # pragma: no cover - makes this a generator

    @hookimpl(wrapper=True)
    def gateway_routes(self) -> Any:
        yield
        raise RuntimeError("in teardown")


def test_a_raising_wrapper_steps_aside() -> None:
    pm = _plugins(Answers("inner"), BrokenWrappers())
    with capture_logs() as logs:
        assert pm.hook.diagnose_failure(unit=UNIT, exit_code=1, log_tail=[]).kind == "inner"
        routes = pm.hook.gateway_routes(units=[])
    assert routes == _plugins(Answers("inner")).hook.gateway_routes(units=[])
    assert [{"name": "inner"}] in routes
    assert [(e["hook"], e["where"]) for e in logs if e["event"] == "plugin_error"] == [
        ("diagnose_failure", "before yield"), ("gateway_routes", "teardown")]


def test_builtins_are_fresh_instances_per_plugin_manager() -> None:
    one, two = Plugins(load_entry_points=False), Plugins(load_entry_points=False)
    for name in DEFAULT_PLUGINS:
        if name.endswith("event_log"):  # stateless functions: the module itself
            continue
        assert one.get_plugin(name) is not two.get_plugin(name), name
    metrics = one.get_plugin("llm_supervisor.plugins.builtin.metrics")
    assert metrics.registry is not two.get_plugin("llm_supervisor.plugins.builtin.metrics").registry
    assert "control_routes" in [c.name for c in one.get_hookcallers(metrics)]
