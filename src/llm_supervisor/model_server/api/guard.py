"""Who may drive the model server from a browser: the Host allow-list and the POST body rule.

Two threats, two checks (see README, "The model API from a browser"):

- DNS rebinding: a page on ``evil.example`` re-points its own name at 127.0.0.1 and then reads
  our answers as same-origin. Its requests carry ``Host: evil.example``, so only host names we
  know are answered (421 otherwise). An IP literal can never be rebound, so any is accepted.
- Cross-site "simple" requests: any page may POST ``text/plain`` or a form to 127.0.0.1 without
  a CORS preflight. Browsers always add an ``Origin`` header to such a POST, so a POST with a
  foreign ``Origin`` is refused (403), and a POST from a browser must say
  ``Content-Type: application/json`` (which cross-origin needs a preflight we never grant).
  Without ``Origin`` (curl, scripts) a missing type or curl's default
  ``application/x-www-form-urlencoded`` is accepted too, so ``curl URL -d '{...}'`` keeps
  working; the body must still be a JSON object.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from llm_supervisor.model_server.settings import ModelServerSettings

# host, or [IPv6], then an optional port; no userinfo, path or spaces.
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]@/\\\s]+)(?::(\d{1,5}))?$")
_CURL_DEFAULT = "application/x-www-form-urlencoded"


class Refusal(Exception):
    """A request this server will not answer: HTTP status, error type and a reason."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


def host_name(value: str) -> str | None:
    """``"LocalHost:5000"`` → ``"localhost"``, ``"[::1]:80"`` → ``"::1"``; ``None`` if malformed."""
    match = _HOST_RE.match(value.strip())
    if match is None:
        return None
    name = match.group(1).lower().rstrip(".")
    return name[1:-1] if name.startswith("[") else name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RequestGuard:
    """The checks, resolved once from the settings."""

    def __init__(self, settings: ModelServerSettings) -> None:
        extra = {n.strip().lower().rstrip(".") for n in settings.allowed_hosts.split(",") if n.strip()}
        self.any_host = "*" in extra
        self.names = {
            "localhost",
            "model-service",  # the unit's name, as a container network calls it
            settings.host.lower(),
            settings.bind_address.lower(),
            socket.gethostname().lower(),
            *extra,
        } - {"", "*"}

    def _known(self, name: str) -> bool:
        return name in self.names or _is_loopback(name)

    def check_host(self, host: str | None) -> None:
        """Raise :class:`Refusal` (421) unless the Host header names this server."""
        if host is None or self.any_host:
            return  # no Host: an HTTP/1.0 client, not a browser
        name = host_name(host)
        if name is not None and (self._known(name) or _is_ip(name)):
            return
        raise Refusal(
            421,
            "host_not_allowed",
            f"this server does not answer to Host {host[:100]!r} (DNS-rebinding protection); "
            "use localhost or an IP address, or add the name to ALLOWED_HOSTS",
        )

    def check_post(self, content_type: str | None, origin: str | None, host: str | None) -> None:
        """Raise :class:`Refusal` (403 or 415) for a POST a browser page may have forged."""
        if origin is not None and not self._origin_allowed(origin, host):
            raise Refusal(
                403,
                "origin_not_allowed",
                f"requests from the web page at {origin[:100]!r} are refused; call the API from "
                "this server's own page, a localhost page, or a client that sends no Origin",
            )
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == "application/json" or (origin is None and media in ("", _CURL_DEFAULT)):
            return
        raise Refusal(
            415,
            "unsupported_media_type",
            f"Content-Type {media or 'none'!r} is not accepted; send the JSON body with "
            "Content-Type: application/json",
        )

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        scheme, sep, rest = origin.strip().partition("://")
        if not sep or scheme.lower() not in ("http", "https") or "/" in rest:
            return False  # "null" (sandboxed frames, file://) or something malformed
        if host is not None and rest.lower() == host.strip().lower():
            return True  # same origin: our own test page
        name = host_name(rest)
        return name is not None and self._known(name)
