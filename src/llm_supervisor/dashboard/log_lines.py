"""One unit's log lines as the dashboard's log panel shows them: each with a level (from a JSON
``level`` field, a logfmt ``level=``, a word such as ``ERROR``/``WARNING``, Traefik's ``ERR``/
``WRN``, or a traceback), and the gateway's access lines parsed into method, path, status and
duration — Caddy's JSON access log, Traefik's JSON access log, and Traefik's default Common Log
Format line (which ends with the duration in ms)."""

from __future__ import annotations

import json
import re
from typing import Any

_LEVELS = {"critical": "error", "fatal": "error", "panic": "error", "error": "error",
           "err": "error", "ftl": "error", "crit": "error", "warning": "warning",
           "warn": "warning", "wrn": "warning", "info": "info", "inf": "info",
           "debug": "debug", "dbg": "debug", "trace": "debug", "trc": "debug"}
_WORD = re.compile(r"\b(CRITICAL|FATAL|PANIC|ERROR|ERR|FTL|WARNING|WARN|WRN|INFO|INF|DEBUG|DBG|"
                   r"TRACE|TRC)\b")
_LOGFMT = re.compile(r"\blevel=\"?(\w+)")
_CLF = re.compile(r'^\S+ \S+ \S+ \[(?P<at>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
                  r'(?P<status>\d{3}) \S+ "[^"]*" "[^"]*" \d+ "[^"]*" "[^"]*" (?P<ms>\d+)ms\s*$')


def _json(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def access(text: str, data: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``{"method", "path", "status", "duration_ms", "at"}`` for a gateway access line, else
    None (``at``: Unix time from Caddy, the logged time as text from Traefik)."""
    data = _json(text) if data is None else data
    if data is not None:
        request = data.get("request")
        if isinstance(request, dict) and "status" in data and "method" in request:  # Caddy
            duration = data.get("duration")
            return {"method": request.get("method"), "path": request.get("uri"),
                    "status": int(data["status"]),
                    "duration_ms": None if duration is None else float(duration) * 1000,
                    "at": data.get("ts")}
        if "RequestMethod" in data and "DownstreamStatus" in data:  # Traefik (ns)
            duration = data.get("Duration")
            return {"method": data["RequestMethod"], "path": data.get("RequestPath"),
                    "status": int(data["DownstreamStatus"]),
                    "duration_ms": None if duration is None else float(duration) / 1e6,
                    "at": data.get("StartLocal") or data.get("StartUTC")}
        return None
    found = _CLF.match(text)
    if found is None:
        return None
    return {"method": found["method"], "path": found["path"], "status": int(found["status"]),
            "duration_ms": float(found["ms"]), "at": found["at"]}


def level(text: str, data: dict[str, Any] | None = None) -> str | None:
    """error, warning, info, debug, or None when the line does not say."""
    if data is not None:
        for key in ("level", "log.level", "levelname", "severity"):
            value = data.get(key)
            if isinstance(value, str) and value.lower() in _LEVELS:
                return _LEVELS[value.lower()]
    found = _LOGFMT.search(text)
    if found and found[1].lower() in _LEVELS:
        return _LEVELS[found[1].lower()]
    if text.startswith(("Traceback (most recent call last)", "OSError", "RuntimeError")):
        return "error"
    found = _WORD.search(text)
    return _LEVELS[found[1].lower()] if found else None


def describe(text: str) -> dict[str, Any]:
    data = _json(text)
    hit = access(text, data)
    found = level(text, data)
    if hit is not None:
        status = hit["status"]
        found = "error" if status >= 500 else "warning" if status >= 400 else found or "info"
    return {"text": text, "level": found, "access": hit}
