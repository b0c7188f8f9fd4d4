"""Built-in plugin: the test desktop's details on the control socket.

``control_routes``: ``GET /novnc`` (URL and password for ``llm-supervisorctl novnc``, and the
``novnc`` unit's state).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from llm_supervisor.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sanic import Sanic

    from llm_supervisor.supervisor.manager import Manager

NOVNC_UNIT = "novnc.service"


class DesktopPlugin:
    @hookimpl
    def control_routes(self, app: Sanic, manager: Manager) -> None:
        from sanic import Request, response

        from llm_supervisor.desktop.info import novnc_info

        @app.get("/novnc")
        async def novnc(request: Request) -> response.HTTPResponse:
            data = await asyncio.to_thread(novnc_info, manager.settings)
            runner = manager.runners.get(NOVNC_UNIT)
            if runner is not None:
                data["state"] = str(runner.state)
                data["reason"] = runner.reason
            return response.json(data)


def make_plugin() -> DesktopPlugin:
    return DesktopPlugin()
