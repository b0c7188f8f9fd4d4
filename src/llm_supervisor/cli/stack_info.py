"""Where the stack answers (gateway, model service, dashboard, noVNC), as the operator views
print it: asked from the daemon where it knows, else from the same settings it resolved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from llm_supervisor.cli.client import ControlClient, ControlError, DaemonNotRunning

GATEWAY_UNIT = "gateway"
MODEL_UNIT = "model-service"


def display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


@dataclass
class StackInfo:
    gateway_url: str
    model_url: str
    dashboard_url: str | None
    gateway: dict[str, Any]
    novnc: dict[str, Any]
    gateway_port: int

    def curl_examples(self) -> list[str]:
        """The README's curl commands with the port actually in use (80 needs none)."""
        host = "localhost" if self.gateway_port == 80 else f"localhost:{self.gateway_port}"
        return [
            f"curl http://{host}/api/health",
            f"curl http://{host}/api/generate -d '{{\"prompt\":\"Napisz krótki wiersz o "
            f"jesieni.\",\"max_length\":256,\"temperature\":0.7}}'",
            f"curl http://{host}/api/generate -d '{{\"prompt\":\"What is the capital of "
            f"France? Answer in one word.\",\"max_length\":64,\"temperature\":0,\"chat\":true}}'",
        ]


def _get(client: ControlClient, path: str) -> dict[str, Any]:
    try:
        answer = client.get(path)
    except (ControlError, DaemonNotRunning, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


def stack_info(client: ControlClient, settings: Any) -> StackInfo:
    host = display_host(settings.bind_address)
    gateway = _get(client, "/gateway")
    gateway_url = gateway.get("url") or f"http://{host}:{settings.gateway_port}/"
    novnc = _get(client, "/novnc")
    if not novnc:
        from llm_supervisor.desktop.info import novnc_info

        try:
            novnc = novnc_info(settings)
        except OSError:
            novnc = {}
    dashboard_port = getattr(settings, "dashboard_port", 0)
    dashboard_host = display_host(getattr(settings, "dashboard_bind_address", "127.0.0.1"))
    dashboard_url = _get(client, "/dashboard").get("url") or (
        f"http://{dashboard_host}:{dashboard_port}/" if dashboard_port else None)
    return StackInfo(
        gateway_url=gateway_url,
        model_url=f"http://127.0.0.1:{settings.model_service_port}/",
        dashboard_url=dashboard_url,
        gateway=gateway,
        novnc=novnc,
        gateway_port=urlsplit(gateway_url).port or 80,
    )
