"""The control API's commands, one table: each entry is a route on the control socket, the
daemon's handler for it (:class:`~.control.ControlHandlers`) and the ``llm-supervisorctl`` verb
that sends it. The daemon registers its routes from this table and the CLI sends its requests
from it, so a command cannot exist on one side only.

Plain data: the CLI imports it without importing the daemon.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Literal


class Command:
    """One command. A plain class: a NamedTuple needs :mod:`typing` at run time and a dataclass
    :mod:`inspect`, together a quarter of ``llm-supervisorctl status``'s import time."""

    __slots__ = ("verb", "method", "route", "handler", "help")

    def __init__(self, verb: str | None, method: Literal["GET", "POST"], route: str, handler: str,
                 help: str = "") -> None:
        self.verb = verb  # ``llm-supervisorctl VERB`` (None: API only)
        self.method = method
        self.route = route  # Sanic's syntax: ``<name>`` is the unit name
        self.handler = handler  # the ControlHandlers method that answers it
        self.help = help

    def path(self, name: str | None = None) -> str:
        """The request path, with the unit name filled in."""
        return self.route.replace("<name>", name) if name is not None else self.route


COMMANDS: tuple[Command, ...] = (
    Command(None, "GET", "/ping", "ping", "is the daemon up; its target and target error"),
    Command("status", "GET", "/units", "units", "show units"),
    Command(None, "GET", "/units/<name>", "unit", "one unit's status and log tail"),
    Command("start", "POST", "/units/<name>/start", "start", "start a unit or target"),
    Command("stop", "POST", "/units/<name>/stop", "stop", "stop a unit or target"),
    Command("restart", "POST", "/units/<name>/restart", "restart",
            "restart a unit or target (?rolling=1: one instance at a time)"),
    Command("repair", "POST", "/units/<name>/repair", "repair",
            "verify and repair a unit's files, then restart it (?verify_only=1)"),
    Command("logs", "GET", "/units/<name>/logs", "logs",
            "a unit's output (?tail=N&follow=1)"),
    Command("events", "GET", "/events", "events", "stream state changes (SSE)"),
    Command("reload", "POST", "/reload", "reload",
            "re-read unit files; restart only changed units"),
    Command("reset", "POST", "/reset", "reset",
            "stop everything, remove what we own, start again"),
    Command("shutdown", "POST", "/shutdown", "shutdown",
            "stop every unit and the daemon (?purge=1)"),
    Command("reopen-logs", "POST", "/reopen-logs", "reopen_logs",
            "reopen log files (after external rotation)"),
    Command("errors", "GET", "/errors", "errors", "unit-file errors the daemon found"),
    Command("plugins", "GET", "/plugins", "plugins", "list loaded plugins and their hooks"),
)

BY_VERB: dict[str, Command] = {c.verb: c for c in COMMANDS if c.verb is not None}
BY_HANDLER: dict[str, Command] = {c.handler: c for c in COMMANDS}
