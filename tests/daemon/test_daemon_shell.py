"""The daemon's shell (daemon/server.py) and its command table (daemon/commands.py).

- Every command in the table has a handler and a registered route, and every verb the CLI sends
  to the daemon is in the table (one table, both sides).
- Shutdown undoes what startup did whichever step fails: a plugin that raises while the daemon
  loads leaves no socket and no lock behind, and the next daemon starts in the same state dir.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sanic import Sanic

from llm_supervisor.cli import ctl
from llm_supervisor.config import Settings
from llm_supervisor.daemon import server
from llm_supervisor.daemon.commands import BY_VERB, COMMANDS
from llm_supervisor.daemon.control import ControlHandlers, build_app
from llm_supervisor.daemon.server import Daemon
from llm_supervisor.plugins.manager import Plugins
from llm_supervisor.supervisor.manager import Manager


@pytest.fixture(autouse=True)
def several_apps_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon builds its control app once per process; these tests build several."""
    monkeypatch.setattr(Sanic, "test_mode", True)


async def _started(settings: Settings) -> tuple[Daemon, asyncio.Future[int]]:
    """A daemon serving in this loop, once its startup has finished."""
    daemon = Daemon(settings)
    task = asyncio.ensure_future(daemon.serve())
    for _ in range(200):
        if daemon.started:
            break
        await asyncio.sleep(0.02)
    assert daemon.started
    return daemon, task


def test_every_command_has_a_handler_and_a_route(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", units_dir=tmp_path, default_runtime="process")
    app = build_app(Manager(settings, Plugins(load_entry_points=False)), lambda reason: None)
    routes = {(route.path.rstrip("/") or "/", method) for route in app.router.routes
              for method in route.methods}
    for command in COMMANDS:
        assert callable(getattr(ControlHandlers, command.handler)), command
        path = command.route.replace("<name>", "<name:str>").lstrip("/")
        assert any(r[0] in (path, "/" + path, command.route.lstrip("/")) and r[1] == command.method
                   for r in routes), f"{command.method} {command.route} not registered"
    assert len({c.route + c.method for c in COMMANDS}) == len(COMMANDS)


def test_every_remote_verb_of_the_cli_is_in_the_table() -> None:
    # monitor composes several GETs; models is the models plugin's route (control_routes hook)
    sent = set(ctl.REMOTE) - {"monitor", "models"}
    assert sent <= set(BY_VERB), sent - set(BY_VERB)
    assert not set(ctl.LOCAL) & set(ctl.REMOTE)


def test_a_failing_startup_step_leaves_no_socket_and_no_lock(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "stack.target").write_text("[Unit]\n")
    settings = Settings(state_dir=tmp_path / "state", units_dir=units, default_runtime="process")

    original_load = Manager.load

    def broken_load(self: Manager) -> None:
        raise RuntimeError("a plugin's add_units raised")

    monkeypatch.setattr(Manager, "load", broken_load)
    with pytest.raises(RuntimeError, match="add_units raised"):
        asyncio.run(Daemon(settings).serve())
    assert not settings.socket.exists()
    assert not (settings.state_dir / "daemon.pid").exists()

    monkeypatch.setattr(Manager, "load", original_load)  # the next daemon: nothing in its way

    async def start_and_stop() -> None:
        daemon, task = await _started(settings)
        assert settings.socket.exists()
        daemon.request_shutdown("test over")
        assert await task == 0

    asyncio.run(start_and_stop())
    assert not settings.socket.exists()


def test_a_second_daemon_never_removes_the_first_ones_socket(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "stack.target").write_text("[Unit]\n")
    settings = Settings(state_dir=tmp_path / "state", units_dir=units, default_runtime="process")

    async def two() -> None:
        first, task = await _started(settings)
        with pytest.raises(server.DaemonError, match="another llm-supervisord"):
            await Daemon(settings).serve()
        assert settings.socket.exists()  # still the first daemon's
        first.request_shutdown("test over")
        await task

    asyncio.run(two())
