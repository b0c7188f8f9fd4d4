"""What ``llm-supervisorctl novnc`` shows: the URL to open and the password."""

from __future__ import annotations

from typing import Any

from llm_supervisor.desktop.secrets_store import DesktopFiles, read_password


def novnc_info(settings: Any) -> dict[str, Any]:
    files = DesktopFiles(settings.state_dir)
    host = settings.bind_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        display = ":" + files.display.read_text().strip()
    except OSError:
        display = None
    return {
        "url": f"http://{host}:{settings.novnc_port}/vnc.html?autoconnect=1&resize=scale",
        "password": read_password(files),
        "password_file": str(files.password),
        "vnc": f"127.0.0.1:{settings.vnc_port}",
        "display": display,
    }
