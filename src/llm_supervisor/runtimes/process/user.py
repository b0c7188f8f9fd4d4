"""Running a process unit as its ``User=``/``Group=``, with its ``AmbientCapabilities=``.

The switch is done by :mod:`subprocess` itself (``user=``, ``group=``, ``extra_groups=``:
setgroups, setregid, setreuid in the child before exec, no Python code between fork and exec).
A unit that also keeps capabilities (the gateway binding port 80) is switched by util-linux's
``setpriv`` instead, which can raise ambient capabilities across the uid change; a plain
``setuid`` drops them all.

Only a root daemon can switch. A daemon running as someone else refuses a unit whose ``User=``
names another user, with a reason saying so (the unit is not started as the wrong user).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_supervisor.runtimes.base import RuntimeError_


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str
    capabilities: tuple[str, ...] = ()

    def popen_kwargs(self) -> dict[str, Any]:
        """For ``create_subprocess_exec`` (empty when setpriv does the switch)."""
        if self.capabilities:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def setpriv_args(self) -> list[str]:
        """``setpriv`` options that switch and keep the capabilities (empty without any)."""
        if not self.capabilities:
            return []
        caps = ",".join(f"+{name.removeprefix('CAP_').lower()}" for name in self.capabilities)
        groups = (["--groups", ",".join(str(g) for g in self.groups)] if self.groups
                  else ["--clear-groups"])
        return [f"--reuid={self.uid}", f"--regid={self.gid}", *groups,
                f"--inh-caps={caps}", f"--ambient-caps={caps}"]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The user's own HOME/USER/LOGNAME, not the daemon's (root's home is not theirs)."""
        return {**env, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None


def _group_id(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise RuntimeError_(f"Group={name}: no such group (create it: groupadd --system "
                            f"{name}; or remove Group=)") from None


def run_as(user: str | None, group: str | None, capabilities: list[str] | tuple[str, ...] = ()
           ) -> RunAs | None:
    """Whom to run as; None when that is the daemon's own user and group (nothing to switch)."""
    if not user and not group:
        return None
    entry = _user(user) if user else pwd.getpwuid(os.geteuid())
    if entry is None:
        assert user is not None
        if not user.isdigit():
            raise RuntimeError_(f"User={user}: no such user (create it: useradd --system "
                                f"--no-create-home --shell /usr/sbin/nologin {user}; or remove "
                                "User=)")
        uid, gid, name, home = int(user), int(user), user, "/"
    else:
        uid, gid, name, home = entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir
    if group:
        gid = _group_id(group)
    if uid == os.geteuid() and gid == os.getegid():
        return None
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise RuntimeError_(f"User={user or me} Group={group or '-'}: switching users needs "
                            f"llm-supervisord to run as root (it runs as {me}); start it as root "
                            "or remove User=/Group= from the unit")
    groups = tuple(sorted(set(os.getgrouplist(name, gid)) - {gid})) if entry else ()
    caps = tuple(capabilities)
    if caps and shutil.which("setpriv") is None:
        raise RuntimeError_("AmbientCapabilities= needs setpriv (util-linux): "
                            "apt-get install util-linux")
    return RunAs(uid=uid, gid=gid, groups=groups, name=name, home=home, capabilities=caps)


def setpriv_prefix(account: RunAs, prefix: list[str]) -> list[str]:
    """The exec prefix (``setpriv --pdeathsig=TERM --`` or nothing) extended by the switch to
    ``account`` with its capabilities; unchanged when subprocess does the switch."""
    if not account.capabilities:
        return prefix
    head = prefix[:-1] if prefix else [shutil.which("setpriv") or "setpriv"]
    return [*head, *account.setpriv_args(), "--"]
