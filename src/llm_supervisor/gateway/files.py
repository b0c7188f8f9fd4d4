"""Writing the gateway's config files: atomically, and only when the content changed.

Traefik watches its dynamic directory, so a half-written file there would be read: every file is
written next to its destination's directory and renamed into place (same filesystem, atomic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from llm_supervisor.core.fsutil import atomic_write_text
from llm_supervisor.gateway import caddy, traefik
from llm_supervisor.gateway.options import GatewayOptions
from llm_supervisor.gateway.routes import Route

_HEADER = "# Written by llm-supervisord from the units' [Route] sections; edits are overwritten.\n"


def write_if_changed(path: Path, text: str, staging_dir: Path | None = None) -> bool:
    """Replace ``path`` with ``text`` unless it already holds it. Returns True when written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    staging = staging_dir or path.parent
    for directory in (staging, path.parent):
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            # Readable by the gateway's user whatever the daemon's umask (systemd's UMask=0077);
            # STATE_DIR/gateway itself stays 0700, owned by that user.
            os.chmod(directory, 0o755)
    atomic_write_text(path, text, mode=0o644, tmp_dir=staging)
    return True


def _yaml(data: dict[str, Any]) -> str:
    return _HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def write_all(routes: list[Route], options: GatewayOptions) -> dict[str, Any]:
    """Render and write the Caddy and the Traefik config (both, so switching gateway is only a
    restart). Returns the Caddy config and whether each file changed."""
    caddy_config = caddy.render(routes, options)
    changed = {
        "caddy": write_if_changed(options.caddy_config, json.dumps(caddy_config, indent=2) + "\n"),
        "traefik_static": write_if_changed(options.traefik_static,
                                           _yaml(traefik.render_static(options))),
        # Staged outside dynamic/ so the watcher never sees a temporary file.
        "traefik_dynamic": write_if_changed(options.traefik_dynamic,
                                            _yaml(traefik.render_dynamic(routes, options)),
                                            staging_dir=options.traefik_dynamic_dir.parent),
    }
    return {"caddy_config": caddy_config, "changed": changed}
