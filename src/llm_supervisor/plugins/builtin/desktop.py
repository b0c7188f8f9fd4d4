"""Built-in plugin: the test desktop's details on the control socket.

``control_routes``: ``GET /novnc`` (URL and password for ``llm-supervisorctl novnc``, and the
``novnc`` unit's state).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from llm_supervisor.desktop.info import novnc_info
from llm_supervisor.plugins.hookspecs import hookimpl
from llm_supervisor.plugins.view import SupervisorView

if TYPE_CHECKING:
    from sanic import Sanic

NOVNC_UNIT = "novnc.service"


class DesktopPlugin:
    @hookimpl
    def control_routes(self, app: Sanic, supervisor: SupervisorView) -> None:
        from sanic import Request, response

        @app.get("/novnc")
        async def novnc(request: Request) -> response.HTTPResponse:
            data = await asyncio.to_thread(novnc_info, supervisor.settings)
            status = supervisor.unit_status(NOVNC_UNIT)
            if status is not None:
                data["state"] = status["state"]
                data["reason"] = status["reason"]
            return response.json(data)


def make_plugin() -> DesktopPlugin:
    return DesktopPlugin()
