"""Unit texts the CLI tests run (a plain module with a unique name)."""

from __future__ import annotations

import sys
from pathlib import Path

HUNGRY = Path(__file__).parent / "cli_hungry.py"


def hungry_tree_unit(megabytes: int) -> str:
    """A shell (the unit's main process, a few hundred KB) whose child holds ``megabytes`` of
    memory and burns a core: only the whole tree's numbers show it."""
    return ("[Service]\n"
            f"ExecStart=/bin/sh -c '{sys.executable} {HUNGRY} {megabytes}; sleep 1000'\n"
            "[Install]\nWantedBy=stack.target\n")


def sleeper_unit() -> str:
    return "[Service]\nExecStart=/bin/sleep 1000\n"


BUSYBOX_TAG = "llm-supervisord-test/cli-busybox:1"


def busybox_image(client) -> str:  # noqa: ANN001 - a docker SDK client
    """A busybox image made from the host's /bin/busybox (no registry needed)."""
    import io
    import tarfile

    import pytest

    if client.images.list(name=BUSYBOX_TAG):
        return BUSYBOX_TAG
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("needs /bin/busybox to build an image without a registry: "
                    "sudo apt-get install busybox-static")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for name in ("sh", "sleep", "yes", "head", "cat"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    repository, tag = BUSYBOX_TAG.split(":")
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag,
                                      changes=["ENV PATH=/bin"])
    return BUSYBOX_TAG


def docker_client():  # noqa: ANN201 - docker SDK client or None
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except Exception:
        return None
