"""Garbage and mutated unit files for the unit-file fault suite, from a fixed seed.

Every case is ``(file name, bytes)``. The mutations start from the shipped units (units/) and
break them the ways people and disks do: lines lost, doubled, shuffled or cut; keys misspelt;
values that are huge, binary, not UTF-8, or exactly the wrong thing for their key; templates that
name themselves or each other without end; ordering cycles.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHIPPED = {path.name: path.read_bytes() for path in sorted((PROJECT_DIR / "units").iterdir())
           if path.suffix in (".service", ".target")}

KEYS = ("Description", "After", "Before", "Requires", "Wants", "ConditionPathExists",
        "ConditionExecutable", "InstallHint", "Runtime", "ExecStartPre", "ExecStart",
        "Environment", "EnvironmentFile", "WorkingDirectory", "Restart", "RestartSec",
        "RestartMaxDelaySec", "StartLimitBurst", "StartLimitIntervalSec", "TimeoutStartSec",
        "TimeoutStopSec", "KillSignal", "Check", "Interval", "Timeout", "Retries", "StartPeriod",
        "Image", "Build", "Dockerfile", "BuildArg", "Ports", "Volumes", "Network", "GPUs",
        "Memory", "CPUs", "Command", "User", "PathPrefix", "Upstream", "HealthPath",
        "StripPrefix", "WantedBy")
BAD_KEYS = ("Foo", "execstart", "", " ", "Exec Start", "X-Note", "[Unit]", "Wants[]", "=",
            "ExecStart ", "Ünit", "A" * 300)
SECTIONS = ("Unit", "Service", "Health", "Container", "Route", "Install", "X-Mine", "Servise",
            "", "Unit]", "[Unit")
# Values that are each wrong for some key (and right for others).
NASTY = ("", "0", "-1", "1e999", "nan", "inf", "infinity", "99999999999999999999h", "0.05",
         "${NOPE}", "${MODEL_SERVICE_PORT}", "$$", "$", "${", "%", "%i%n%p%%", "%z", "'unclosed",
         '"unclosed', "\\", "a" * 300, "../../etc/passwd", "http://h:x/", "http://h:99999/",
         "http://[::1/", "http://:80/", "https://ex ample.com/", "tcp://h:70000", "tcp://::1:80",
         "tcp://h", "tcp://[::1]:0", "exec:", "exec:'", "ftp://x", "x@y@z", "loop@%ix.service",
         "yes", "maybe", "SIGKILL", "SIGNOPE", "1:2:3:4", "127.0.0.1:0:80", "8080:99999", "/",
         "🙂", "\u2028", "a=b=c", "=x", "A", "X-", "always", "docker", "process", "-/nope",
         "!/tmp", "1_000", "٣", "²", "0x10", "1 2 3", "stack.target", "@.service", "a@.service")

Case = tuple[str, bytes]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _nasty_value(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.05:
        return b"x" * rng.choice((10_000, 200_000))
    if roll < 0.10:
        return rng.randbytes(rng.randint(1, 40))
    return rng.choice(NASTY).encode()


def _mutate_line(rng: random.Random, line: bytes) -> bytes:
    key, equals, value = line.partition(b"=")
    choice = rng.randrange(6)
    if choice == 0 and equals:
        return key + b"=" + _nasty_value(rng)
    if choice == 1 and equals:
        return rng.choice(BAD_KEYS + KEYS).encode() + b"=" + value
    if choice == 2:
        return line[: rng.randint(0, len(line))]
    if choice == 3:
        return line + b" \\"
    if choice == 4 and equals:
        return key + b"=" + value + b" " + _nasty_value(rng)
    return line.replace(b"=", b" ", 1)


MUTATIONS: tuple[Callable[[random.Random, list[bytes]], None], ...] = (
    lambda rng, lines: lines.pop(rng.randrange(len(lines))) if lines else None,
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines or [b""])),
    lambda rng, lines: rng.shuffle(lines),
    lambda rng, lines: lines.__setitem__(i := rng.randrange(len(lines)), _mutate_line(rng, lines[i]))
    if lines else None,
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1),
                                    rng.choice(KEYS + BAD_KEYS).encode() + b"=" + _nasty_value(rng)),
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1),
                                    b"[" + rng.choice(SECTIONS).encode() + b"]"),
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1), rng.randbytes(rng.randint(1, 64))),
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1), b"Description=\xff\xfe\xc3("),
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1),
                                    b"Description=" + b"y" * rng.choice((70_000, 1_000_000))),
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1),
                                    rng.choice((b"\x00", b"\x0c", b"\x1b[2J", b"\r", b"\x7f"))),
)


def mutated_shipped(rng: random.Random) -> tuple[str, bytes]:
    name, data = rng.choice(sorted(SHIPPED.items()))
    lines = _lines(data)
    for _ in range(rng.randint(1, 6)):
        rng.choice(MUTATIONS)(rng, lines)
    return name, b"\n".join(lines)


def truncated_shipped(rng: random.Random) -> tuple[str, bytes]:
    name, data = rng.choice(sorted(SHIPPED.items()))
    return name, data[: rng.randint(0, len(data))]


def random_text(rng: random.Random) -> bytes:
    alphabet = "[]=#;\\ \t\n$%{}@.:/abcAXZ019" + "".join(chr(rng.randint(0x80, 0x2FFF))
                                                       for _ in range(5))
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 600))).encode(
        "utf-8", "surrogatepass")


def _suffix(name: str) -> str:
    return ".target" if name.endswith(".target") else ".service"


def single_file_cases(seed: int, count: int) -> list[Case]:
    """``count`` one-file cases; names are unique (``c0001-xvfb.service``) and never templates
    unless the source was one."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for index in range(count):
        kind = rng.random()
        if kind < 0.55:
            source, data = mutated_shipped(rng)
        elif kind < 0.70:
            source, data = truncated_shipped(rng)
        elif kind < 0.85:
            source, data = rng.choice(("x.service", "x.target")), rng.randbytes(rng.randint(0, 4096))
        else:
            source, data = rng.choice(("x.service", "x.target")), random_text(rng)
        stem = re.sub(r"[^a-z0-9-]", "", source.rsplit(".", 1)[0])
        cases.append((f"c{seed}n{index:04d}-{stem}{_suffix(source)}", data))
    return cases


def graph_cases(prefix: str) -> list[Case]:
    """Templates and orderings that once hung or crashed: growing self-references, templates
    naming each other, a deep chain of templates, a long After= chain, cycles."""
    service = b"[Service]\nExecStart=/bin/true\n"
    cases: list[Case] = [
        (f"{prefix}loop@.service", b"[Unit]\nWants=" + prefix.encode() + b"loop@%ix.service\n"
         + service),
        (f"{prefix}ping@.service", b"[Unit]\nWants=" + prefix.encode() + b"pong@%ia.service "
         + prefix.encode() + b"pong@%ib.service\n" + service),
        (f"{prefix}pong@.service", b"[Unit]\nRequires=" + prefix.encode() + b"ping@%ic.service\n"
         + service),
        (f"{prefix}pool.target", f"[Unit]\nWants={prefix}loop@1.service {prefix}ping@1.service "
         f"{prefix}deep0@x.service\n".encode()),
    ]
    depth = 40
    for level in range(depth):
        wants = f"Wants={prefix}deep{level + 1}@%i.service\n" if level + 1 < depth else ""
        cases.append((f"{prefix}deep{level}@.service", f"[Unit]\n{wants}".encode() + service))
    chain = 1200
    for i in range(chain):
        after = f"{prefix}chain{i + 1:04d}.target" if i + 1 < chain else ""
        cases.append((f"{prefix}chain{i:04d}.target", f"[Unit]\nAfter={after}\n".encode()))
    for size in (1, 2, 3, 7):
        for i in range(size):
            after = f"{prefix}cyc{size}x{(i + 1) % size}.service"
            cases.append((f"{prefix}cyc{size}x{i}.service",
                          f"[Unit]\nAfter={after}\nRequires={after}\n".encode() + service))
    return cases


def write_cases(directory: Path, cases: list[Case]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in cases:
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths


ERROR_LINE = re.compile(r"^(?P<file>/[^:]+\.(?:service|target)):(?P<line>[1-9][0-9]*): ")


def error_lines(stderr: str) -> Iterator[tuple[str, re.Match[str] | None]]:
    """Each error ``verify`` printed, with its file:line match (None when it names neither)."""
    for line in stderr.split("\n"):
        if line.strip():
            yield line, ERROR_LINE.match(line)
