"""``GET /``: the live candlestick page (``static/index.html``, ``static/app.js``).

The chart library is plotly.js as the ``plotly`` package on PyPI ships it (``plotly/package_data``),
served from the installed package by ticklake itself: the page works with no internet, loads nothing
from a CDN, and no third-party code is kept in this repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

_STATIC = resources.files("ticklake.api") / "static"
_CACHE = {"Cache-Control": "public, max-age=3600"}


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall ticklake (it depends on plotly)")
    return path


class PageEndpoints:
    def __init__(self) -> None:
        self._index = (_STATIC / "index.html").read_bytes()
        self._app = (_STATIC / "app.js").read_bytes()
        self._plotly = plotly_js()

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/static/app.js", self.app_js, methods=["GET"]),
            Route("/static/plotly.min.js", self.plotly, methods=["GET"]),
        ]

    async def index(self, request: Request) -> Response:
        return Response(self._index, media_type="text/html; charset=utf-8")

    async def app_js(self, request: Request) -> Response:
        return Response(self._app, media_type="text/javascript; charset=utf-8")

    async def plotly(self, request: Request) -> Response:
        return FileResponse(self._plotly, media_type="text/javascript; charset=utf-8", headers=_CACHE)
