"""The unit-file keys: per section, each key's attribute, its value grammar and whether it
repeats. Adding a key means one line here, the field it fills in :mod:`.model`, and the code
that uses it."""

from __future__ import annotations

import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_supervisor.units import accounts as unit_accounts
from llm_supervisor.units import memory_values
from llm_supervisor.units import values as unit_values
from llm_supervisor.units.durations import parse_duration
from llm_supervisor.units.model import RESTART_POLICIES, RUNTIMES, normalise_name

MIN_PROBE_SEC = 0.1  # the shortest health-check Interval= and Timeout=
_Converter = Callable[[str], Any]
_Expand = Callable[[str], str]


@dataclass(frozen=True)
class SplitFirst:
    """A converter given the value before ``${NAME}`` expansion and an ``expand`` function: it
    splits the value into words first, so an expanded value is always exactly one word (a path
    with spaces stays whole; a value cannot add words to a command line)."""

    convert: Callable[[str, _Expand], Any]


def _words(text: str, expand: _Expand) -> list[str]:
    """Split like a shell (quotes group words), then expand each word on its own."""
    return [expand(word) for word in shlex.split(text)]


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected a boolean (yes/no), got {text!r}")


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 0:
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return number


def _signal(text: str) -> int:
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r} (e.g. SIGTERM, SIGINT)") from None


def _choice(options: tuple[str, ...]) -> _Converter:
    def convert(text: str) -> str:
        if text not in options:
            raise ValueError(f"invalid value {text!r} (expected one of: {', '.join(options)})")
        return text

    return convert


def _runtime_condition(text: str) -> str:
    """``ConditionRuntime=[!]process|docker``: the runtime the unit would get (its Runtime=, else
    the daemon's default; ``auto`` counts as docker when an engine answers)."""
    if text.lstrip("!") not in RUNTIMES or text.startswith("!!"):
        raise ValueError(f"invalid value {text!r} (expected process, docker, !process or !docker)")
    return text


def _command(text: str, expand: _Expand) -> list[str]:
    # systemd prefixes ("-", "@", "+", ...) are not supported; say so rather than misbehave.
    argv = _words(text, expand)
    if not argv:
        raise ValueError("empty command")
    return argv


def _unit_list(text: str, expand: _Expand) -> list[str]:
    # A variable that expands to nothing names no unit.
    return [unit_values.unit_name(normalise_name(word))
            for word in (expand(part) for part in text.split()) if word]


def _environment(text: str, expand: _Expand) -> dict[str, str]:
    result = {}
    for assignment in shlex.split(text):
        key, equals, value = assignment.partition("=")
        if not equals or not key:
            raise ValueError(f"expected NAME=VALUE, got {assignment!r}")
        result[expand(key)] = expand(value)
    return result


def _each_word(check: _Converter) -> SplitFirst:
    return SplitFirst(lambda text, expand: [check(word) for word in _words(text, expand)])


def _health_check(text: str, expand: _Expand) -> tuple[str, str]:
    if text.startswith("exec:"):
        # Stored re-joined with shell quoting: the prober's shlex.split gives back these words.
        return "exec", shlex.join(_command(text.removeprefix("exec:"), expand))
    text = expand(text)
    if text.startswith(("http://", "https://")):
        return "http", unit_values.http_url(text)
    if text.startswith("tcp://"):
        return "tcp", unit_values.tcp_address(text.removeprefix("tcp://"))
    raise ValueError(f"unknown check {text!r} (use http://..., tcp://HOST:PORT or exec:COMMAND)")


# Per section: key -> (attribute, converter, repeatable). Repeatable keys accumulate; an empty
# assignment resets them, as in systemd.
SCHEMA: dict[str, dict[str, tuple[str, _Converter | SplitFirst, bool]]] = {
    "Unit": {
        "Description": ("description", str, False),
        "Documentation": ("_ignored", str, True),
        "After": ("after", SplitFirst(_unit_list), True),
        "Before": ("before", SplitFirst(_unit_list), True),
        "Requires": ("requires", SplitFirst(_unit_list), True),
        "Wants": ("wants", SplitFirst(_unit_list), True),
        "ConditionPathExists": ("_cond_path", str, True),
        "ConditionExecutable": ("_cond_exec", str, True),
        "ConditionRuntime": ("_cond_runtime", _runtime_condition, True),
        "InstallHint": ("install_hint", str, False),
    },
    "Service": {
        "Runtime": ("runtime", _choice(RUNTIMES), False),
        "ExecStartPre": ("exec_start_pre", SplitFirst(_command), True),
        "ExecStart": ("exec_start", SplitFirst(_command), False),
        "Environment": ("environment", SplitFirst(_environment), True),
        "EnvironmentFile": ("environment_files", str, True),
        "WorkingDirectory": ("working_directory", str, False),
        "Restart": ("restart", _choice(RESTART_POLICIES), False),
        "RestartSec": ("restart_sec", parse_duration, False),
        "RestartMaxDelaySec": ("restart_max_delay_sec", parse_duration, False),
        "StartLimitBurst": ("start_limit_burst", _positive_int, False),
        "StartLimitIntervalSec": ("start_limit_interval_sec", parse_duration, False),
        "TimeoutStartSec": ("timeout_start_sec", parse_duration, False),
        "TimeoutStopSec": ("timeout_stop_sec", parse_duration, False),
        "KillSignal": ("kill_signal", _signal, False),
        "User": ("user", unit_accounts.account_name, False),
        "Group": ("group", unit_accounts.account_name, False),
        "AmbientCapabilities": ("ambient_capabilities", unit_accounts.capabilities, True),
        "MemoryMax": ("memory_max", memory_values.memory_limit, False),
        "MemoryHigh": ("memory_high", memory_values.memory_limit, False),
        # No token for this long while generating: the engine is stuck (progress, not wall time).
        "StallTimeoutSec": ("stall_timeout_sec", unit_values.duration(0.1), False),
    },
    "Health": {
        "Check": ("check", SplitFirst(_health_check), False),
        # A probe every 0 s would busy-loop the daemon; an infinite one would never run.
        "Interval": ("interval", unit_values.duration(MIN_PROBE_SEC, allow_infinity=False), False),
        "Timeout": ("timeout", unit_values.duration(MIN_PROBE_SEC, allow_infinity=False), False),
        "Retries": ("retries", _positive_int, False),
        "StartPeriod": ("start_period", parse_duration, False),
    },
    "Container": {
        "Image": ("image", str, False),
        "Build": ("build", str, False),
        "Dockerfile": ("dockerfile", str, False),
        "BuildArg": ("build_args", SplitFirst(_environment), True),
        "Ports": ("ports", _each_word(unit_values.container_port), True),
        "Volumes": ("volumes", SplitFirst(_words), True),
        "Network": ("network", str, False),
        "GPUs": ("gpus", str, False),
        "Memory": ("memory", str, False),
        "CPUs": ("cpus", unit_values.positive_float, False),
        "Command": ("command", SplitFirst(_words), False),
        "User": ("user", str, False),
    },
    "Route": {
        "PathPrefix": ("path_prefix", str, False),
        "Upstream": ("upstream", unit_values.http_url, False),
        "HealthPath": ("health_path", str, False),
        "StripPrefix": ("strip_prefix", _bool, False),
    },
    "Install": {
        "WantedBy": ("wanted_by", SplitFirst(_unit_list), True),
    },
}
ALLOWED_SECTIONS = {"service": set(SCHEMA), "target": {"Unit", "Install"}}
REFERENCES = ("after", "before", "requires", "wants", "wanted_by")
