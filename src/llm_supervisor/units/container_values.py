"""The grammar of ``[Container]`` values: ports, volumes and memory sizes as ``docker run``
writes them. Pure parsing (no Docker SDK): the unit builder validates with it, the Docker runtime
and the export turn the parsed values into their own formats.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


class SpecError(ValueError):
    """A [Container] value that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    protocol: str
    host_ip: str | None
    host_port: int | None

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"

    def describe(self) -> str:
        host = f"{self.host_ip or '0.0.0.0'}:{self.host_port or '(random)'}"
        return f"{host} → {self.key}"


@dataclass(frozen=True)
class VolumeMount:
    source: str
    target: str
    mode: str  # "rw" or "ro"
    named: bool  # a named volume (created with our labels if missing), else a bind mount


def parse_port(text: str) -> PortBinding:
    """``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`` as in ``docker run -p`` (``IP::PORT``
    publishes on a random host port; an IPv6 address goes in brackets)."""
    value, _, proto = text.strip().partition("/")
    host_ip: str | None = None
    bracketed = True
    if value.startswith("["):
        host_ip, sep, value = value[1:].partition("]:")
        bracketed = bool(sep)
    elif value.count(":") == 2:
        host_ip, _, value = value.partition(":")
    host_port, colon, container_port = value.rpartition(":")
    if (not bracketed or host_ip == "" or proto not in ("", "tcp", "udp", "sctp")
            or not container_port.isdigit() or (host_port and not host_port.isdigit())
            or (colon and not host_port and host_ip is None)):
        raise SpecError(f"[Container] Ports: cannot parse {text!r} "
                        "(expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp])")
    return PortBinding(int(container_port), proto or "tcp", host_ip,
                       int(host_port) if host_port else None)


def parse_volume(text: str, base_dir: Path) -> VolumeMount:
    """``SOURCE:TARGET[:ro|rw]``. A source that looks like a path (``/``, ``.``, ``~``) is a bind
    mount, relative paths resolving against ``base_dir``; anything else is a named volume."""
    parts = text.split(":")
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        source, target, mode = parts
    elif len(parts) == 2:
        (source, target), mode = parts, "rw"
    else:
        raise SpecError(f"[Container] Volumes: cannot parse {text!r} (expected SOURCE:TARGET[:ro])")
    if not target.startswith("/"):
        raise SpecError(f"[Container] Volumes: container path {target!r} must be absolute")
    named = not source.startswith(("/", ".", "~"))
    if named:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", source):
            raise SpecError(f"[Container] Volumes: {source!r} is neither a path nor a volume name")
    else:
        path = Path(os.path.expanduser(source))
        source = str(path if path.is_absolute() else (base_dir / path).resolve())
    return VolumeMount(source, target, mode, named)


def parse_memory(text: str) -> str:
    """systemd/docker style sizes: ``512m``, ``2G``, ``1.5g`` → what the SDK accepts (bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*", text)
    if not match:
        raise SpecError(f"[Container] Memory: cannot parse {text!r} (e.g. 512m, 2g)")
    number, unit = float(match.group(1)), match.group(2).lower()
    factor = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    return str(int(number * factor))
