"""``[Service] User=``, ``Group=``, ``AmbientCapabilities=``: whom a process unit runs as.

Parsing and checking only; the process runtime does the switch
(:mod:`llm_supervisor.runtimes.process.user`). Names are checked against the account
database when the unit file is read, so ``llm-supervisorctl verify`` names file and line of an
unknown user. One name is exempt: the effective ``UNIT_USER`` (the shipped units'
``User=${UNIT_USER}``), which llm-supervisord creates itself when it starts as root
(:mod:`llm_supervisor.daemon.unit_user`).
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_supervisor.units.ini import UnitFileError

# Linux capabilities (linux/capability.h), the names setpriv and systemd accept.
CAPABILITIES = frozenset((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
))


def capabilities(text: str) -> list[str]:
    """``CAP_NET_BIND_SERVICE cap_kill`` → ``["CAP_NET_BIND_SERVICE", "CAP_KILL"]``."""
    names = [word.upper() if word.upper().startswith("CAP_") else f"CAP_{word.upper()}"
             for word in text.replace(",", " ").split()]
    unknown = [name for name in names if name not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capability {', '.join(unknown)} (e.g. CAP_NET_BIND_SERVICE)")
    return names


def account_name(text: str) -> str:
    """A user or group name, or a numeric id."""
    name = text.strip()
    if not name or any(ch.isspace() or ch in ":/" for ch in name):
        raise ValueError(f"expected a user or group name, got {text!r}")
    return name


def user_exists(name: str) -> bool:
    if name.isdigit():
        return True  # numeric ids need no entry (as in systemd)
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    if name.isdigit():
        return True
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def check(user: str | None, group: str | None, path: Path, service: Mapping[str, Any],
          variables: Mapping[str, str]) -> None:
    """Unknown ``User=``/``Group=`` → an error naming file and line (``service`` holds the
    ``_line_<attribute>`` numbers the parser records)."""
    if user and user != variables.get("UNIT_USER") and not user_exists(user):
        raise UnitFileError(path, service.get("_line_user"),
                            f"unknown user {user!r} (create it: useradd --system --no-create-home "
                            f"--shell /usr/sbin/nologin {user}; or remove User=)", "[Service] User")
    if group and group != variables.get("UNIT_USER") and not group_exists(group):
        raise UnitFileError(path, service.get("_line_group"),
                            f"unknown group {group!r} (create it: groupadd --system {group}; or "
                            "remove Group=)", "[Service] Group")
