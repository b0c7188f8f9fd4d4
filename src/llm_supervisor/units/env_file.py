"""``EnvironmentFile=``: ``NAME=VALUE`` lines, as systemd reads them (the common subset).

Blank lines and lines starting with ``#`` or ``;`` are skipped; ``export NAME=VALUE`` is
accepted; surrounding whitespace and quotes around the value are removed; a later line wins.
A file that cannot be read (``-`` prefix: optional, then it is skipped), is not UTF-8, or has a
line without ``=`` raises :class:`RuntimeError_` naming the file (and line): the unit reports
``could not start: ...`` instead of the supervisor failing on it.
"""

from __future__ import annotations

from pathlib import Path

from llm_supervisor.core.errors import RuntimeError_
from llm_supervisor.units.ini import UnitFileError


def read_env_file(path: Path, optional: bool) -> dict[str, str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        if optional:
            return {}
        raise RuntimeError_(f"EnvironmentFile {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RuntimeError_(f"EnvironmentFile {path}: not UTF-8 text (byte {exc.start}); "
                            "save it as UTF-8") from exc
    env = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if "=" not in stripped:
            raise RuntimeError_(str(UnitFileError(path, number, "expected NAME=VALUE")))
        key, value = stripped.split("=", 1)
        env[key.strip().removeprefix("export ").strip()] = value.strip().strip("\"'")
    return env
