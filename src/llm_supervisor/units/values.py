"""Checks for unit-file values that name something on the network or a span of time.

A value that passes here is one the daemon can use as is: a health probe never meets a URL its
HTTP client rejects, a port is 1-65535, a probe interval cannot busy-loop. Each function raises
``ValueError`` with a message that says what is expected; :mod:`units` adds file, line and key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from llm_supervisor.units.container_values import SpecError, parse_port
from llm_supervisor.units.durations import parse_duration

MAX_UNIT_NAME = 255  # systemd's limit, and a file name's
# systemd's unit-name characters (without "\" escapes): nothing that could leave a directory
# when the name becomes a log file's name, nothing a command line or a URL would split on.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@-]+")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def unit_name(name: str) -> str:
    """A unit name as written in After=/Wants=/..., or a template instance's name."""
    if len(name) > MAX_UNIT_NAME:
        raise ValueError(f"unit name longer than {MAX_UNIT_NAME} characters: {name[:40]!r}...")
    if not _UNIT_NAME.fullmatch(name):
        raise ValueError(f"invalid unit name {name!r} (letters, digits and : _ . @ - only)")
    return name


def port(text: str, what: str = "port") -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"invalid {what} {text!r} (expected a number from 1 to 65535)")
    return int(text)


def host(text: str) -> str:
    """A DNS name or an IP address (IPv6 without brackets)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    name = text.lower().removesuffix(".")
    if not name or len(name) > 253 or not all(_DNS_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValueError(f"invalid host {text!r} (a host name or an IP address)")
    return text


def http_url(text: str) -> str:
    """``http(s)://HOST[:PORT][/PATH]`` that the health prober's HTTP client accepts."""
    example = "expected http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:5000/api/health"
    if any(c.isspace() for c in text):
        raise ValueError(f"URL {text!r} contains whitespace ({example})")
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError as exc:  # bad port, unbalanced [IPv6]
        raise ValueError(f"invalid URL {text!r}: {exc} ({example})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL {text!r} must start with http:// or https:// ({example})")
    if not parts.hostname:
        raise ValueError(f"URL {text!r} has no host ({example})")
    if url_port == 0:
        raise ValueError(f"invalid port 0 in URL {text!r} (expected 1 to 65535)")
    host(parts.hostname)
    try:
        httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {text!r}: {exc} ({example})") from None
    return text


def tcp_address(text: str) -> str:
    """``HOST:PORT`` (``[IPv6]:PORT``), as ``tcp://`` checks use it."""
    address, colon, port_text = text.rpartition(":")
    if not colon or not address:
        raise ValueError(f"expected tcp://HOST:PORT, got 'tcp://{text}'")
    bracketed = address.startswith("[") and address.endswith("]")
    bare = address[1:-1] if bracketed else address
    if bracketed:
        ipaddress.IPv6Address(bare)  # raises ValueError naming the address
    elif ":" in address:
        raise ValueError(f"an IPv6 address goes in brackets: tcp://[{address}]:{port_text}")
    host(bare)
    port(port_text)
    return text


def container_port(text: str) -> str:
    """``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`` (``docker run -p``) with ports in range."""
    try:
        binding = parse_port(text)
    except SpecError as exc:
        raise ValueError(str(exc).removeprefix("[Container] Ports: ")) from None
    port(str(binding.container_port), "container port")
    if binding.host_port is not None:
        port(str(binding.host_port), "host port")
    return text


def duration(minimum: float = 0.0, allow_infinity: bool = True) -> Callable[[str], float]:
    """A converter for a time span of at least ``minimum`` seconds."""

    def convert(text: str) -> float:
        seconds = parse_duration(text)
        if math.isinf(seconds) and not allow_infinity:
            raise ValueError(f"time span {text!r} must be finite")
        if seconds < minimum:
            raise ValueError(f"time span {text!r} is below the minimum of {minimum:g}s")
        return seconds

    return convert


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number, got {text!r}")
    return value
