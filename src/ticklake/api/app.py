"""The API application: routes, error handling and metrics put together.

Starlette with responses we encode ourselves (orjson) measured fastest here (shared notes, stack.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ticklake.api.admission import ReadAdmission
from ticklake.api.auth import KeyAuth
from ticklake.api.candle_cache import CandleCache
from ticklake.api.cursor import CursorSeal
from ticklake.api.health import HealthEndpoint, HealthSources
from ticklake.api.instrumentation import RequestMetrics
from ticklake.api.keys import KeyStore
from ticklake.api.live import LiveHub
from ticklake.api.openapi import OpenApiEndpoints
from ticklake.api.page import PageEndpoints
from ticklake.api.responses import ApiError, api_error_handler, error_response
from ticklake.api.stream import StreamEndpoints
from ticklake.api.tiers import TierBoundary, TieredReader
from ticklake.api.v1 import MarketDataEndpoints, normalize_markets
from ticklake.lake.cold_reader import ColdReader
from ticklake.ops.metrics import REGISTRY
from ticklake.settings import Settings
from ticklake.warehouse.changes import StoredChanges
from ticklake.warehouse.reader import WarehouseReader

_HTTP_MESSAGES = {404: "no such path; see /docs", 405: "method not allowed; this API answers GET"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the API's error shape instead of plain text.

    A path with a trailing slash is redirected to the path without it, by a relative Location: Starlette's
    own redirect (``redirect_slashes``, off here) names the Host the client sent, so a forged Host header
    made this API redirect to any site.
    """
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404 and path.endswith("/") and path != "/" and request.method in ("GET", "HEAD"):
        bare = path.rstrip("/")
        if any(getattr(route, "path", None) == bare for route in request.app.router.routes):
            query = request.url.query
            return RedirectResponse(bare + (f"?{query}" if query else ""), status_code=308)
    return error_response(exc.status_code, _HTTP_MESSAGES.get(exc.status_code, exc.detail),
                          headers=dict(exc.headers) if exc.headers else None)


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app(
    reader: WarehouseReader,
    settings: Settings,
    health: HealthSources | None = None,
    configured_markets: Iterable[tuple[str, str]] = (),
    cold: ColdReader | None = None,
    boundary: TierBoundary | None = None,
    health_reader: WarehouseReader | None = None,
    changes: StoredChanges | None = None,
    live: LiveHub | None = None,
    keys: KeyStore | None = None,
    cursors: CursorSeal | None = None,
) -> Starlette:
    """The ASGI app serving ``reader``'s data.

    With ``keys``, every path but the open ones (api/auth.py) needs one of its keys, within the key's
    rate; the caller decides whether keys are required (``key_store_for``). Pages on the origins in
    ``settings.api.cors_origins`` may call it from a browser.

    ``health`` adds components to /health (name -> zero-argument callable returning a dict with a
    ``status``); ``configured_markets`` ((exchange, "BASE/QUOTE") pairs) are listed by /v1/symbols
    and answer with empty results, not 404, before their first trade is stored. With ``cold``,
    candles and trades older than warm retention are read from the Iceberg tier (api/tiers.py);
    ``boundary`` defaults to the one ``settings.retention`` implies. Reads are admitted
    ``settings.api.max_concurrent_reads`` at a time (admission.py): give ``reader`` as many connections
    (a ``ClientPool``). /health pings through ``health_reader`` (default ``reader``), unadmitted, so that
    it answers while every read slot is taken. With ``changes`` (the writer's, in the process that
    ingests), candle answers are kept while they are true (candle_cache.py). ``live`` (the hub the
    same process's ingester feeds) serves ``/v1/stream``; without it the stream answers that this
    process does not ingest. ``cursors`` seals the cursors handed out (the installation's key:
    ``load_cursor_secret``); default: ``live``'s, else a key for this app's lifetime.
    """
    cursors = cursors or (live.cursors if live is not None else CursorSeal.random())
    if live is not None and live.cursors is not cursors:
        raise ValueError("the live hub and the app must seal cursors with the same key")
    tiers = TieredReader(reader, cold, boundary or TierBoundary.from_retention(settings.retention))
    market_data = MarketDataEndpoints(reader, settings.api.max_limit, normalize_markets(configured_markets), tiers,
                                      ReadAdmission.from_settings(settings.api),
                                      CandleCache(changes) if changes is not None else None, cursors,
                                      ReadAdmission.for_exports(settings.api))
    routes = [
        *market_data.routes(),
        *StreamEndpoints(live).routes(),
        *HealthEndpoint(health_reader or reader, health or {}).routes(),
        Route("/metrics", _metrics, methods=["GET"]),
        *OpenApiEndpoints(settings.api.max_limit, api_keys=keys is not None).routes(),
        *PageEndpoints().routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=_access_middleware(settings, keys, [Middleware(RequestMetrics)]),
        exception_handlers={ApiError: api_error_handler, HTTPException: _http_error},
    )
    app.router.redirect_slashes = False  # _http_error redirects, without the client's Host
    return app


def _access_middleware(settings: Settings, keys: KeyStore | None, inner: list[Middleware]) -> list[Middleware]:
    """CORS outermost (a preflight is answered before any key check; refusals carry the CORS headers a
    page needs to read them), then ``inner``, then the key check."""
    middleware = list(inner)
    if settings.api.cors_origins:
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key"], expose_headers=["X-Ticklake-Tier", "Retry-After"],
            max_age=600))
    if keys is not None:
        middleware.append(Middleware(KeyAuth, store=keys))
    return middleware
