"""Per-request metrics, and the last word on errors nobody handled.

Pure ASGI (not BaseHTTPMiddleware) so it costs little per request. The route label is the matched
path template ("/v1/ohlcv"), never the raw URL, which would give every query string its own series.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticklake.api.responses import error_response
from ticklake.ops.metrics import API_LATENCY, API_REQUESTS

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"  # one label for every path no route knows (scanners would add series)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_and_note_status(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception:
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise  # too late for a clean answer; the server closes the connection
            status = 500
            # The client learns only that it failed; the traceback stays in the log.
            await error_response(500, "internal error")(scope, receive, send)
        finally:
            route = scope.get("route")  # set by starlette's router on the scope it shares with us
            label = getattr(route, "path", None) or UNMATCHED
            API_REQUESTS.labels(label, str(status)).inc()
            API_LATENCY.labels(label).observe(time.perf_counter() - started)
