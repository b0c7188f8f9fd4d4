"""Stop like stop.sh: what ``--purge`` removes, listed before anything is removed.

Everything the daemon created and nothing else: Docker objects carrying this daemon's owner
label (containers, networks, our images, named volumes) and, inside the state directory only,
the model cache and converted models, the units' home (hub caches), the repair store, the
desktop and gateway files, and the logs — each only when the state directory's record
(:mod:`llm_supervisor.config.state_ledger`) says the daemon created it, so ``STATE_DIR=$HOME``
loses nothing of the user's. A path the user configured outside the state directory
(``MODEL_PATH=/data/models``) is never touched, and said so. Symlinks are removed as links,
never followed.

The daemon removes the Docker objects and unit logs as it exits (``POST /shutdown?purge=1``);
the files here, and any Docker object still carrying our labels, are removed by the CLI once
the daemon is gone (nothing writes them any more), so a purge works with no daemon running too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_supervisor.config.state_ledger import STATE_DIR_ENTRIES, created_entries, forget

DAEMON_LOG_PREFIX = "daemon.log"


@dataclass
class PurgePlan:
    state_dir: Path
    paths: list[tuple[Path, str]] = field(default_factory=list)
    docker: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.paths and not self.docker

    def lines(self) -> list[str]:
        lines = [f"  {path}  ({why})" for path, why in self.paths]
        lines += [f"  docker {name}" for name in self.docker]
        lines += [f"  kept: {text}" for text in self.kept]
        return lines


def _docker_objects(settings: Any) -> list[str]:
    """Our Docker objects, when an engine answers (listing only)."""
    try:
        import docker

        from llm_supervisor.runtimes.docker.labels import owner_filter, owner_id

        client = docker.from_env(timeout=3)
        mine = {"label": owner_filter(owner_id(settings.state_dir))}
        found = [f"container {c.name}" for c in client.containers.list(all=True, filters=mine)]
        found += [f"network {n.name}" for n in client.networks.list(filters=mine)]
        found += [f"image {', '.join(i.tags or [i.short_id])}"
                  for i in client.images.list(filters=mine)]
        found += [f"volume {v.name}" for v in client.volumes.list(filters=mine)]
        client.close()
        return found
    except Exception:  # no engine, no SDK: nothing of ours can exist there to list
        return []


def plan(settings: Any, with_docker: bool = True) -> PurgePlan:
    state_dir = Path(settings.state_dir)
    result = PurgePlan(state_dir)
    ours = created_entries(state_dir)
    for name, why in STATE_DIR_ENTRIES.items():
        path = state_dir / name
        if not (path.exists() or path.is_symlink()) or name == DAEMON_LOG_PREFIX:
            continue
        if name in ours:
            result.paths.append((path, why))
        else:
            result.kept.append(f"{path} (there before llm-supervisord; not ours to remove)")
    for path in sorted(state_dir.glob(DAEMON_LOG_PREFIX + "*")):
        if DAEMON_LOG_PREFIX in ours:
            result.paths.append((path, "daemon log"))
    model_path = Path(settings.effective_model_path)
    if not _inside(model_path, state_dir):
        result.kept.append(f"MODEL_PATH {model_path} (configured outside {state_dir})")
    if with_docker:
        result.docker = _docker_objects(settings)
    return result


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def remove_files(purge_plan: PurgePlan) -> list[str]:
    """Remove the plan's paths; each is checked again to lie inside the state directory."""
    removed = []
    root = purge_plan.state_dir.resolve()
    for path, _ in purge_plan.paths:
        if path.parent.resolve() != root and not _inside(path.parent, root):
            continue
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                continue
        except FileNotFoundError:
            continue
        except OSError as exc:
            removed.append(f"kept {path}: {exc.strerror}")
            continue
        removed.append(str(path))
    gone = {name for name in STATE_DIR_ENTRIES
            if not os.path.lexists(purge_plan.state_dir / name)}
    with contextlib.suppress(OSError):
        forget(purge_plan.state_dir, gone)
    return removed


def remove_docker_objects(settings: Any) -> list[str]:
    """With no daemon running: the docker runtime removes what carries our labels."""
    from llm_supervisor.runtimes.docker.runtime import DockerRuntime

    async def run() -> list[str]:
        runtime = DockerRuntime(settings)
        try:
            return await runtime.remove_owned(purge=True)
        finally:
            await runtime.close()

    with contextlib.suppress(Exception):
        return asyncio.run(run())
    return []


def on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def ask(question: str) -> bool:
    """y/N on the terminal; anything but yes (or end of input) is no."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def decide(purge: bool, yes: bool, purge_plan: PurgePlan) -> bool | None:
    """Whether to purge: the answer, or None to refuse (``--purge`` without ``--yes`` and no
    terminal to ask on). Without ``--purge``, only a terminal is asked (default no)."""
    if not purge:
        if not on_terminal() or purge_plan.empty:
            return False
        print("Caches and volumes of the stack:")
        print("\n".join(purge_plan.lines()))
        return ask("Also delete the caches and volumes?")
    print("--purge removes:" if not purge_plan.empty else "--purge: nothing to remove")
    print("\n".join(purge_plan.lines()))
    if yes or purge_plan.empty:
        return True
    if not on_terminal():
        print("refusing to purge without --yes when not on a terminal", file=sys.stderr)
        return None
    return ask("Remove all of this?")


def finish(settings: Any, purge_plan: PurgePlan) -> None:
    """After the daemon is gone: the files, and the Docker objects it did not remove (a daemon
    whose units all ran as processes never connected to the engine)."""
    removed = remove_docker_objects(settings) if purge_plan.docker else []
    removed += remove_files(purge_plan)
    for line in removed:
        print(f"removed {line}" if not line.startswith("kept ") else line)


def stop_stack(settings: Any, timeout: float, purge: bool, yes: bool) -> int:
    """``llm-supervisord stop [--purge [--yes]]`` and ``llm-supervisorctl shutdown [--purge]``."""
    from llm_supervisor.cli.client import ControlClient
    from llm_supervisor.cli.common import shut_down

    client = ControlClient(settings.socket, timeout=timeout)
    if not purge and not on_terminal():  # scripts are never asked
        return shut_down(client, timeout)
    purge_plan = plan(settings)
    choice = decide(purge, yes, purge_plan)
    if choice is None:
        return 2
    code = shut_down(client, timeout, purge=choice)
    if choice and code == 0:
        finish(settings, purge_plan)
    return code
