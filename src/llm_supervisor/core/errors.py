"""The base of the supervisor's own exceptions, and the one every layer raises for a unit that
cannot be started or stopped. Each error's message says what to do next."""

from __future__ import annotations


class SupervisorError(Exception):
    """Base of the errors llm-supervisord raises on purpose (bad unit files, runtimes, the
    control socket); anything else reaching the top is a bug."""


class RuntimeError_(SupervisorError):
    """A unit could not be started or stopped; the message tells the user what to do."""
