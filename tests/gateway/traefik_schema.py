"""The part of Traefik's documented file-provider schema that our generated config uses.

Transcribed by hand (key names, types, required keys, ``additionalProperties: false``) from
Traefik's routing reference (routers, services/loadBalancer/healthCheck, middlewares retry and
stripPrefix) and the SchemaStore ``traefik-v3-file-provider.json`` draft-07 schema, plus the
static-configuration keys we write. A small validator for the JSON-Schema keywords used here
(type, properties, additionalProperties, required, items, minItems, oneOf) checks against it
and names the offending key; the real Traefik then judges the same files (traefik_check.py).
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}

ROUTER = {
    "type": "object",
    "properties": {"entryPoints": _STRS, "rule": _STR, "ruleSyntax": _STR, "priority": _INT,
                   "middlewares": _STRS, "service": _STR, "tls": {"type": "object"}},
    "additionalProperties": False,
    "required": ["rule", "service"],
}
HEALTH_CHECK = {
    "type": "object",
    "properties": {"method": _STR, "path": _STR, "scheme": _STR, "hostname": _STR, "port": _INT,
                   "interval": _STR, "unhealthyInterval": _STR, "timeout": _STR,
                   "headers": {"type": "object"}, "status": _INT, "mode": _STR,
                   "followRedirects": _BOOL},
    "additionalProperties": False,
}
LOAD_BALANCER = {
    "type": "object",
    "properties": {
        "servers": {"type": "array", "minItems": 1,
                    "items": {"type": "object", "properties": {"url": _STR}, "required": ["url"]}},
        "sticky": {"type": "object"},
        "healthCheck": HEALTH_CHECK,
        "passHostHeader": _BOOL,
        "responseForwarding": {"type": "object", "properties": {"flushInterval": _STR},
                               "additionalProperties": False},
        "serversTransport": _STR,
    },
    "additionalProperties": False,
    "required": ["servers"],
}
SERVICE = {"type": "object", "oneOf": [
    {"properties": {"loadBalancer": LOAD_BALANCER}, "additionalProperties": False},
    {"properties": {"weighted": {"type": "object"}}, "additionalProperties": False},
]}
MIDDLEWARE = {"type": "object", "oneOf": [
    {"properties": {"retry": {"type": "object",
                              "properties": {"attempts": _INT, "initialInterval": _STR},
                              "additionalProperties": False, "required": ["attempts"]}},
     "additionalProperties": False},
    {"properties": {"forwardAuth": {"type": "object",
                                    "properties": {"address": _STR, "trustForwardHeader": _BOOL,
                                                   "authResponseHeaders": _STRS},
                                    "additionalProperties": False, "required": ["address"]}},
     "additionalProperties": False},
    {"properties": {"stripPrefix": {"type": "object",
                                    "properties": {"prefixes": _STRS, "forceSlash": _BOOL},
                                    "additionalProperties": False}},
     "additionalProperties": False},
]}
DYNAMIC = {
    "type": "object",
    "properties": {"http": {
        "type": "object",
        "properties": {
            "routers": {"type": "object", "additionalProperties": ROUTER},
            "services": {"type": "object", "additionalProperties": SERVICE},
            "middlewares": {"type": "object", "additionalProperties": MIDDLEWARE},
            "serversTransports": {"type": "object"},
        },
        "additionalProperties": False,
    }, "tcp": {"type": "object"}, "udp": {"type": "object"}, "tls": {"type": "object"}},
    "additionalProperties": False,
}
ENTRY_POINT = {"type": "object", "properties": {"address": _STR, "http": {"type": "object"},
                                                "transport": {"type": "object"}},
               "additionalProperties": False, "required": ["address"]}
STATIC = {
    "type": "object",
    "properties": {
        "global": {"type": "object", "properties": {"checkNewVersion": _BOOL,
                                                    "sendAnonymousUsage": _BOOL},
                   "additionalProperties": False},
        "entryPoints": {"type": "object", "additionalProperties": ENTRY_POINT},
        "providers": {"type": "object", "properties": {
            "file": {"type": "object", "properties": {"directory": _STR, "filename": _STR,
                                                      "watch": _BOOL},
                     "additionalProperties": False}}, "additionalProperties": False},
        "api": {"type": "object", "properties": {"dashboard": _BOOL, "insecure": _BOOL,
                                                 "debug": _BOOL},
                "additionalProperties": False},
        "ping": {"type": "object", "properties": {"entryPoint": _STR}, "additionalProperties": False},
        "log": {"type": "object", "properties": {"level": _STR, "format": _STR, "filePath": _STR,
                                                 "noColor": _BOOL},
                "additionalProperties": False},
        "accessLog": {"type": "object"},
    },
    "additionalProperties": False,
}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}


def errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``value``, as ``path: message`` strings."""
    found: list[str] = []
    expected = schema.get("type")
    if expected:
        kind = _TYPES[expected]
        if not isinstance(value, kind) or (expected == "integer" and isinstance(value, bool)):
            return [f"{where}: expected {expected}, got {type(value).__name__}"]
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not errors(value, s, where)]
        if len(matching) != 1:
            found.append(f"{where}: matches {len(matching)} of the oneOf alternatives (keys: "
                         f"{sorted(value) if isinstance(value, dict) else value!r})")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{where}: missing required {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unknown key {key!r} (allowed: {sorted(properties)})")
            elif isinstance(extra, dict):
                found += errors(item, extra, f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for index, item in enumerate(value):
                found += errors(item, schema["items"], f"{where}[{index}]")
    return found
