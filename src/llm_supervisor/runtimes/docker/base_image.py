"""A local Debian bookworm base image, made with debootstrap and ``docker import``.

No image registry answers on this kind of machine, but Debian's package registry does: a minimal
Debian root filesystem (``debootstrap --variant=minbase``, about a minute) with Python 3.11
becomes the ``FROM`` of every image of the stack (``ARG BASE_IMAGE``). Made once per engine;
``reset`` and ``shutdown --purge`` keep it (it has no owner label).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker.build import BuildPlan

BASE_TAG = "llm-supervisord/bookworm:base"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Python for the launchers that run inside the images (desktop, gateway) and the model service's
# venv; ca-certificates for HTTPS package indexes.
PACKAGES = ("python3", "python3-venv", "ca-certificates")
_PER_PACKAGE = ("I: Retrieving", "I: Validating", "I: Unpacking", "I: Extracting",
                "I: Configuring ")
CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["bash"]',
]


DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def mirror() -> str:
    return os.environ.get("LLM_SUPERVISOR_DEBIAN_MIRROR") or DEFAULT_MIRROR


def keyring() -> Path:
    """The Debian archive keys every downloaded index is checked against (the mirror is plain
    HTTP: the signature is the only thing that vouches for the packages)."""
    return Path(os.environ.get("LLM_SUPERVISOR_DEBIAN_KEYRING") or DEFAULT_KEYRING)


def _require_keyring(output: Callable[[str], None]) -> Path:
    """The keyring, installed (``debian-archive-keyring``) when missing and we may; else fail
    closed: never an unchecked debootstrap."""
    path = keyring()
    if not path.is_file() and path == Path(DEFAULT_KEYRING) and os.geteuid() == 0 \
            and shutil.which("apt-get"):
        output("installing the Debian archive keyring (apt-get install debian-archive-keyring)")
        subprocess.run(["apt-get", "install", "-y", "-q", "debian-archive-keyring"],
                       capture_output=True, text=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not path.is_file():
        raise RuntimeError_(f"the Debian archive keyring {path} is missing, and the base image "
                            "is never made from unverified packages: `sudo apt-get install "
                            "debian-archive-keyring` (or point LLM_SUPERVISOR_DEBIAN_KEYRING at "
                            "your mirror's keyring), or set BASE_IMAGE to a local Debian image")
    return path


def debootstrap_argv(debootstrap: str, rootfs: Path, keys: Path) -> list[str]:
    """``--force-check-gpg``: a Release file that is unsigned, or signed by a key not in
    ``keys``, stops debootstrap (its default only warns when it cannot check)."""
    return [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
            f"--keyring={keys}", "--force-check-gpg", SUITE, str(rootfs), mirror()]


def base_exists(client: Any) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_TAG)
    except ImageNotFound:
        return False
    return True


def _debootstrap(output: Callable[[str], None]) -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        output("installing debootstrap (apt-get install debootstrap)")
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"],
                              capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("debootstrap")
        if proc.returncode == 0 and found:
            return found
        raise RuntimeError_("cannot install debootstrap: apt-get said "
                            f"{proc.stderr.strip()[-400:]!r}; install it by hand, or set "
                            "BASE_IMAGE to a local Debian image (`docker images`)")
    raise RuntimeError_("making the local Debian base image needs debootstrap, run as root: "
                        "`sudo apt-get install debootstrap` and `sudo llm-supervisorctl images "
                        "build`, or set BASE_IMAGE to a local Debian bookworm image")


def make_base_image(client: Any, output: Callable[[str], None]) -> str:
    """Create :data:`BASE_TAG` (blocking; about a minute). Returns its tag."""
    if os.geteuid() != 0:
        raise RuntimeError_("making the local Debian base image (debootstrap) needs root: run "
                            "`sudo llm-supervisorctl images build` once, or set BASE_IMAGE to a "
                            "local Debian bookworm image")
    debootstrap = _debootstrap(output)
    keys = _require_keyring(output)
    with tempfile.TemporaryDirectory(prefix="llm-supervisord-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        output(f"debootstrap --variant=minbase {SUITE} from {mirror()} (about a minute)")
        proc = subprocess.Popen(
            debootstrap_argv(debootstrap, rootfs, keys),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines = [*lines[-20:], line]
            # Per-package Retrieving/Validating/Unpacking lines are hundreds: show the phases.
            if line.startswith(("E:", "W:")) or (
                    line.startswith("I: ") and not line.startswith(_PER_PACKAGE)):
                output(f"debootstrap: {line}")
        if proc.wait() != 0:
            tail = "\n".join(lines[-6:])
            if "signature" in tail.lower() or "gpg" in tail.lower() or "key" in tail.lower():
                raise RuntimeError_(
                    f"debootstrap refused the Debian mirror {mirror()}: its Release file is not "
                    f"signed by a key in {keys} (a wrong or tampered mirror, or a keyring that "
                    f"does not match it); fix the mirror or LLM_SUPERVISOR_DEBIAN_KEYRING:\n{tail}")
            raise RuntimeError_(
                f"debootstrap could not make the base image: the Debian mirror {mirror()} did not "
                f"answer or failed; check the network (or set LLM_SUPERVISOR_DEBIAN_MIRROR to a "
                f"reachable mirror) and retry `llm-supervisorctl images build`:\n{tail}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar_path = Path(tmp) / "rootfs.tar"
        output(f"docker import → {BASE_TAG}")
        with tarfile.open(tar_path, "w") as tar:
            tar.add(str(rootfs), arcname=".")
        repository, tag = BASE_TAG.split(":")
        client.api.import_image_from_file(str(tar_path), repository=repository, tag=tag,
                                          changes=CHANGES)
    return BASE_TAG


def ensure_base_image(client: Any, output: Callable[[str], None]) -> str:
    if not base_exists(client):
        make_base_image(client, output)
    return BASE_TAG


def resolve_base(client: Any, plan: BuildPlan, configured: str | None,
                 output: Callable[[str], None]) -> BuildPlan:
    """The plan with BASE_IMAGE set: the configured one, else our local Debian base (made now
    when missing) for Dockerfiles that declare ``ARG BASE_IMAGE``."""
    if "BASE_IMAGE" in plan.buildargs or not plan.declares_base_image:
        return plan
    base = configured or ensure_base_image(client, output)
    return BuildPlan(plan.context, plan.dockerfile, plan.ignore_file,
                     {"BASE_IMAGE": base, **plan.buildargs}, plan.tag, plan.extra_dirs)
