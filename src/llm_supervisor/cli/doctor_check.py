"""One ``doctor`` finding: OK, WARN or FAIL, what was seen, and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    name: str
    level: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""
