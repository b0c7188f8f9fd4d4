"""Reading systemd-style INI unit files into sections of (key, value, line) entries.

This is only syntax: it keeps repeated keys in order and remembers each line number, so that the
typed layer (:mod:`units`) can name file, line and key in every error. ``configparser`` can do
neither. Semantics follow systemd.syntax(7): ``#``/``;`` comments, a trailing backslash continues
a line, an empty assignment (``Key=``) is kept so that list keys can be reset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from llm_supervisor.core.errors import SupervisorError

# Control characters other than tab (a NUL cannot even reach exec(); the others hide text).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class UnitFileError(SupervisorError):
    """A problem in a unit file, located by file, line and (where known) key."""

    def __init__(self, path: Path | str, line: int | None, message: str, key: str | None = None):
        self.path = Path(path)
        self.line = line
        self.key = key
        # A huge or binary value is quoted in many messages: keep errors readable.
        self.message = message if len(message) <= 500 else message[:500] + "... (cut)"
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.path), "line": self.line, "key": self.key, "message": self.message}


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass
class Section:
    name: str
    line: int
    entries: list[Entry] = field(default_factory=list)


@dataclass
class RawUnitFile:
    path: Path
    sections: list[Section]
    text: str


def parse_unit_text(text: str, path: Path | str) -> RawUnitFile:
    """Split ``text`` into sections of entries; raise :class:`UnitFileError` on bad syntax."""
    path = Path(path)
    sections: list[Section] = []
    current: Section | None = None
    pending = ""
    pending_line = 0
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    # Lines end at "\n" only (str.splitlines also splits at form feeds, \x1c, U+2028, ...), so
    # the line numbers in errors are the ones an editor shows.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        bad = _CONTROL.search(line)
        if bad:
            raise UnitFileError(path, number, f"control character {bad.group()!r} in the file "
                                "(unit files are text: remove it)")
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            if not pending:
                pending_line = number
            pending += line[:-1] + " "
            continue
        if pending:
            line, number_of_entry = pending + line, pending_line
            pending = ""
        else:
            number_of_entry = number
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise UnitFileError(path, number_of_entry, f"malformed section header {line!r}")
            current = Section(line[1:-1].strip(), number_of_entry)
            sections.append(current)
            continue
        if "=" not in line:
            raise UnitFileError(path, number_of_entry, f"expected Key=Value, got {line!r}")
        if current is None:
            raise UnitFileError(path, number_of_entry, "assignment outside of any [Section]")
        key, value = line.split("=", 1)
        current.entries.append(Entry(key.strip(), value.strip(), number_of_entry))
    if pending:
        raise UnitFileError(path, pending_line, "file ends inside a continued line")
    return RawUnitFile(path, sections, text)


def read_unit_file(path: Path) -> RawUnitFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnitFileError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnitFileError(path, line, f"not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                            f"{exc.start}): save the file as UTF-8") from None
    return parse_unit_text(text, path)
