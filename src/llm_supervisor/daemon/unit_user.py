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

import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import structlog

import llm_supervisor
from llm_supervisor.core import nofollow
from llm_supervisor.core.errors import SupervisorError

log = structlog.get_logger("llm_supervisor.daemon")

ROOT_NAMES = ("root", "0")
GRANT_MARKER = "unit-user.granted"  # root's record that the trees below were handed over


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


def stop_account_processes(uid: int, timeout: float = 5.0) -> int:
    """SIGKILL every process running as ``uid`` (left over from a daemon that died): nothing of
    the account may run while root walks the directories it owns. Returns how many."""
    import psutil

    victims = []
    for process in psutil.process_iter(["uids"]):
        uids = process.info["uids"]
        if uids is not None and uid in (uids.real, uids.effective, uids.saved):
            with contextlib.suppress(psutil.Error):
                process.kill()
                victims.append(process)
    psutil.wait_procs(victims, timeout=timeout)
    return len(victims)


def _granted_before(state_fd: int, account: pwd.struct_passwd) -> bool:
    data = nofollow.read_file_at(state_fd, GRANT_MARKER)
    try:
        recorded = json.loads(data or b"null")
    except ValueError:
        return False
    return recorded == {"uid": account.pw_uid, "gid": account.pw_gid}


def _own_tops(state_fd: int, tops: list[tuple[str, int]], owner: tuple[int, int],
              walk: bool) -> None:
    """Each top directory (a path relative to the state dir) made, given its mode and owner,
    and with ``walk`` its whole tree handed over by descriptor."""
    for rel, mode in tops:
        fd = os.dup(state_fd)
        try:
            for part in rel.split("/"):
                child = nofollow.open_child_dir(fd, part, mode)
                os.close(fd)
                fd = child
            os.fchmod(fd, mode)
            if walk:
                nofollow.own_tree(fd, owner)
            else:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)


def grant(settings: Any, account: pwd.struct_passwd) -> list[Path]:
    """Hand the account the directories the shipped units write. Returns them.

    Every change goes by descriptor (:mod:`llm_supervisor.core.nofollow`): the account owns
    these trees and could otherwise swap a directory for a link between a listing and a chown.
    The whole trees are walked only the first time (or when the account changed: the record
    ``STATE_DIR/unit-user.granted``), with every process of the account stopped first; later
    starts fix the top directories alone — whatever the account creates is its own already."""
    state = Path(settings.state_dir)
    owner = (account.pw_uid, account.pw_gid)
    os.chmod(state, 0o711)
    tops = [("desktop", 0o700), ("gateway", 0o700), ("home", 0o700)]
    model = Path(settings.effective_model_path)
    model_inside = model.is_relative_to(state) and model != state
    if model_inside:
        tops.append((model.relative_to(state).as_posix(), 0o755))
    state_fd = os.open(state, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk = not _granted_before(state_fd, account)
        if walk:
            stopped = stop_account_processes(account.pw_uid)
            if stopped:
                log.warning("unit_user_processes_stopped", user=account.pw_name, count=stopped)
        if model_inside:
            # The directories between the state dir and the model dir (models/) stay root's,
            # enterable (0711); the model dir itself is the account's.
            parents = model.relative_to(state).parts[:-1]
            fd = os.dup(state_fd)
            try:
                for part in parents:
                    child = nofollow.open_child_dir(fd, part, 0o711)
                    os.close(fd)
                    fd = child
                    os.fchmod(fd, 0o711)
            finally:
                os.close(fd)
        _own_tops(state_fd, tops, owner, walk)
        if walk:
            nofollow.write_file_at(state_fd, GRANT_MARKER,
                                   json.dumps({"uid": owner[0], "gid": owner[1]}).encode(),
                                   mode=0o600)
    finally:
        os.close(state_fd)
    owned = [state / rel for rel, _ in tops]
    if not model_inside:
        model.mkdir(parents=True, exist_ok=True)
        fd = os.open(model, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:  # the operator's own dir: only the top, never a whole tree
            if os.fstat(fd).st_uid == 0:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        owned.append(model)
    return owned


FALLBACK_FIX = ("install llm-supervisord where other users can read it (e.g. /opt with the "
                "system python3, packaging/systemd) and use a state dir outside /root "
                "(LLM_SUPERVISOR_STATE_DIR=/var/lib/llm-supervisor)")


def fallback_reason(settings: Any) -> str | None:
    """Why a root daemon with these settings runs its units as root instead of the default
    ``UNIT_USER``, or None (not root, UNIT_USER set on purpose, or nothing in the way): what
    ``start --wait`` reports in its summary, evaluated as the daemon does."""
    name = settings.resolved_unit_user
    if os.geteuid() != 0 or name in ROOT_NAMES or settings.unit_user is not None:
        return None
    try:
        existing: pwd.struct_passwd | None = pwd.getpwnam(name)
    except KeyError:
        existing = None
    return blocked_reason(settings, existing)


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
        fix = FALLBACK_FIX
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
