"""A root daemon's units run as ``UNIT_USER`` (default ``llm-supervisor``): make that possible.

At start, before any unit: create the account when missing (a system user without a login
shell), then give it what the shipped units write — ``STATE_DIR/desktop`` (X cookie, VNC
password, browser profile), ``STATE_DIR/gateway`` (Caddy's data dirs and admin socket), the model
directory (conversion, repair), ``STATE_DIR/home`` (its HOME: caches) — and make ``STATE_DIR``
traversable (0711: no listing; the control socket and the records stay the daemon's).

When the account could not even start a unit — the daemon's interpreter or package, or the state
dir, sits behind a directory it cannot enter (a pyenv under /root, pytest's 0700 temp dirs) — a
default ``UNIT_USER`` falls back to root with a ``units_run_as_root`` warning that says how to fix
it; an explicitly configured one stops the daemon with that message instead.
See docs/privileges.md.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

import llm_supervisor
from llm_supervisor.core.errors import SupervisorError

log = structlog.get_logger("llm_supervisor.daemon")

ROOT_NAMES = ("root", "0")


class UnitUserError(SupervisorError):
    pass


def _grants(mode: int, st: os.stat_result, uid: int | None, gids: set[int]) -> bool:
    """Would an account (``uid`` None: one that does not exist yet) get ``mode`` (r=4, x=1)?"""
    if uid is not None and st.st_uid == uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in gids:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & mode == mode


def first_blocked(path: Path, uid: int | None, gids: set[int], need: int) -> Path | None:
    """The first directory on the way to ``path`` the account cannot enter, or ``path`` itself
    when it lacks ``need`` there; None when all is well."""
    path = Path(os.path.realpath(path))
    for directory in [*reversed(path.parents)]:
        try:
            if not _grants(1, directory.stat(), uid, gids):
                return directory
        except OSError:
            return directory
    try:
        st = path.stat()
    except OSError:
        return None  # created later, by us, for the account
    if stat.S_ISDIR(st.st_mode):
        need |= 1
    return None if _grants(need, st, uid, gids) else path


def needed_paths(settings: Any) -> list[tuple[Path, int]]:
    """What every shipped unit needs to reach: the interpreter, its library, this package,
    the state dir (for paths below it)."""

    return [(Path(sys.executable), 1), (Path(sysconfig.get_paths()["stdlib"]), 4),
            (Path(sysconfig.get_paths()["purelib"]), 4),
            (Path(llm_supervisor.__file__).parent, 4),
            # The state dir itself is made 0711 by grant(); the way to it must be open already.
            (Path(settings.state_dir).parent, 1)]


def blocked_reason(settings: Any, account: pwd.struct_passwd | None) -> str | None:
    uid = account.pw_uid if account else None
    gids = set(os.getgrouplist(account.pw_name, account.pw_gid)) if account else set()
    for path, need in needed_paths(settings):
        blocked = first_blocked(path, uid, gids, need)
        if blocked is not None:
            return f"{path} is out of its reach ({blocked} is mode {_mode(blocked)})"
    return None


def _mode(path: Path) -> str:
    try:
        return oct(stat.S_IMODE(path.stat().st_mode))
    except OSError:
        return "unreadable"


def ensure_account(name: str, home: Path) -> pwd.struct_passwd:
    """The account, created (``useradd --system``) when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", str(home),
                             "--shell", "/usr/sbin/nologin", "--user-group", name],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        try:  # another daemon (another state dir) may have created it in the meantime
            return pwd.getpwnam(name)
        except KeyError:
            pass
        raise UnitUserError(f"could not create the unit user {name!r}: "
                            f"{result.stderr.strip() or result.returncode} (create it yourself: "
                            f"useradd --system --no-create-home --shell /usr/sbin/nologin {name}; "
                            "or set UNIT_USER=root)")
    log.info("unit_user_created", user=name, home=str(home))
    return pwd.getpwnam(name)


def _own_tree(top: Path, account: pwd.struct_passwd, mode: int) -> None:
    top.mkdir(parents=True, exist_ok=True)
    os.chmod(top, mode)
    for path in _walk(top):
        st = path.lstat()
        if st.st_uid != account.pw_uid or st.st_gid != account.pw_gid:
            os.lchown(path, account.pw_uid, account.pw_gid)


def _walk(top: Path) -> Iterable[Path]:
    yield top
    for root, dirs, files in os.walk(top, followlinks=False):
        for name in (*dirs, *files):
            yield Path(root) / name


def grant(settings: Any, account: pwd.struct_passwd) -> list[Path]:
    """Hand the account the directories the shipped units write. Returns them."""
    state = Path(settings.state_dir)
    os.chmod(state, 0o711)
    owned = [state / "desktop", state / "gateway", state / "home"]
    for path in owned:
        _own_tree(path, account, 0o700)
    model = Path(settings.effective_model_path)
    if model.is_relative_to(state):
        # The parents between the state dir and the model dir (models/) must be enterable too.
        for parent in reversed(model.relative_to(state).parents):
            if parent != Path("."):
                (state / parent).mkdir(exist_ok=True)
                os.chmod(state / parent, 0o711)
        _own_tree(model, account, 0o755)
        owned.append(model)
    else:
        model.mkdir(parents=True, exist_ok=True)
        if model.stat().st_uid == 0:  # the operator's own dir: only the top, never a whole tree
            os.chown(model, account.pw_uid, account.pw_gid)
        owned.append(model)
    return owned


def prepare(settings: Any) -> str:
    """Called once by the daemon at start, as root; returns the user the units will run as
    (``settings.unit_user`` is set to it, so ``${UNIT_USER}`` expands to it)."""
    name = settings.resolved_unit_user
    if os.geteuid() != 0 or name in ROOT_NAMES:
        return name
    explicit = settings.unit_user is not None
    try:
        existing: pwd.struct_passwd | None = pwd.getpwnam(name)
    except KeyError:
        existing = None
    reason = blocked_reason(settings, existing)
    if reason is not None:
        fix = ("install llm-supervisord where other users can read it (e.g. /opt with the "
               "system python3, packaging/systemd) and use a state dir outside /root "
               "(LLM_SUPERVISOR_STATE_DIR=/var/lib/llm-supervisor)")
        if explicit:
            raise UnitUserError(f"UNIT_USER={name}: {reason}; {fix}, or set UNIT_USER=root")
        log.warning("units_run_as_root", unit_user=name, reason=reason, fix=fix,
                    silence="UNIT_USER=root")
        settings.unit_user = "root"
        return "root"
    account = ensure_account(name, Path(settings.state_dir) / "home")
    owned = grant(settings, account)
    settings.unit_user = name
    log.info("unit_user_ready", user=name, uid=account.pw_uid, owns=[str(p) for p in owned])
    return name
