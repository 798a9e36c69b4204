"""GET /openapi.json (OpenAPI 3.1, written by hand from the same constants the parser uses) and /docs.

Both are built once per app: the document depends only on settings.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ticklake.api.docs_page import render_docs
from ticklake.api.export import FORMATS, MAX_FILE_ROWS
from ticklake.api.params import (
    DEFAULT_CANDLE_LIMIT,
    DEFAULT_TIMEFRAME,
    DEFAULT_TRADE_LIMIT,
    TIME_FORMATS,
    reject_unknown,
)
from ticklake.api.responses import JSONBytes
from ticklake.model import EXCHANGES
from ticklake.warehouse.reader import TIMEFRAMES

DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$"
JSON = "application/json"
API_VERSION = "1.0.0"  # of this document: /v1 paths change only compatibly


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("schemas", schema_name)}}}


TIER_DESCRIPTION = ("Where the answer was read: warm (ClickHouse), cold (the Iceberg lake, for times older than "
                    "ClickHouse's retention) or warm+cold (a range across the boundary, as one series). "
                    "Also sent as the X-Ticklake-Tier header.")
_TIER = {"type": "string", "enum": ["warm", "cold", "warm+cold"], "description": TIER_DESCRIPTION}


def _tiered(response: dict[str, Any]) -> dict[str, Any]:
    """A 200 answer of the market-data endpoints, with the tier header."""
    return {**response, "headers": {"X-Ticklake-Tier": {"description": TIER_DESCRIPTION, "schema": _TIER}}}


def _files(response: dict[str, Any]) -> dict[str, Any]:
    """A 200 answer that may also be a file export (api/export.py): CSV, Parquet, Arrow IPC stream."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {**response,
            "content": {**response["content"], "text/csv": {"schema": {"type": "string"}},
                        "application/vnd.apache.parquet": binary, "application/vnd.apache.arrow.stream": binary},
            "headers": {**response["headers"], "Content-Disposition": {
                "description": "Files only: attachment; filename=\"<exchange>_<BASE-QUOTE>_<trades or timeframe>_"
                               "<start>_<end>.<csv|parquet|arrows>\". A file cut short by a failure after its first "
                               "byte ends without the last chunk of its chunked body (an incomplete transfer).",
                "schema": {"type": "string"}}}}


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _parameters(max_limit: int) -> dict[str, Any]:
    time_schema = {"oneOf": [{"type": "string", "format": "date-time"},
                             {"type": "integer", "minimum": 0, "description": "epoch milliseconds"}]}
    return {
        "exchange": _query("exchange", "Venue.", {"type": "string", "enum": list(EXCHANGES)}, required=True),
        "symbol": _query("symbol", "Canonical market BASE/QUOTE, e.g. BTC/USDT (URL-encoded: BTC%2FUSDT); "
                                   "case-insensitive, venue aliases such as XBT read as BTC.",
                         {"type": "string", "pattern": r"^[A-Za-z0-9]+/[A-Za-z0-9]+$", "examples": ["BTC/USDT"]},
                         required=True),
        "timeframe": _query("timeframe", "Candle length; buckets are aligned to the Unix epoch (1d starts "
                                         "at 00:00 UTC).",
                            {"type": "string", "enum": list(TIMEFRAMES), "default": DEFAULT_TIMEFRAME}),
        "start": _query("start", f"Inclusive lower bound. {TIME_FORMATS}.", time_schema),
        "end": _query("end", f"Exclusive upper bound. {TIME_FORMATS}. Must be after start.", time_schema),
        "candle_limit": _query("limit", "Most candles returned: the first ones from start when start is "
                                        f"given, else the newest ones before end. JSON: at most {max_limit}. A "
                                        "file (format) has no default: every candle unless limit is given (with "
                                        f"no start, at most {max_limit}).",
                               {"type": "integer", "minimum": 1, "maximum": MAX_FILE_ROWS,
                                "default": min(DEFAULT_CANDLE_LIMIT, max_limit)}),
        "trade_limit": _query("limit", f"Page size, at most {max_limit}. A file (format) has no default: every "
                                       "trade of the range unless limit is given.",
                              {"type": "integer", "minimum": 1, "maximum": MAX_FILE_ROWS,
                               "default": min(DEFAULT_TRADE_LIMIT, max_limit)}),
        "channel": _query("channel", "What to follow: trades, or candles (with timeframe).",
                          {"type": "string", "enum": ["trades", "candles"]}, required=True),
        "after": _query("after", "Trades only: a cursor (of a trades message, or /v1/trades' tail_cursor); the "
                                 "stored trades after it come first, then the live flow.",
                        {"type": "string", "pattern": "^[A-Za-z0-9_-]{32}$"}),
        "since": _query("since", f"Candles only: the stored candles from this time come first. {TIME_FORMATS}.",
                        time_schema),
        "format": _query("format", "json: the answer above, in pages. csv, parquet, arrow (an Arrow IPC "
                                   "stream): a file of the whole range [start, end), streamed, oldest first; limit, "
                                   "when given, caps its rows (no default cap; candles with a limit and no start: "
                                   "the newest limit, as JSON). Wins over the Accept header (text/csv, "
                                   "application/vnd.apache.parquet, application/vnd.apache.arrow.stream, "
                                   "application/json).",
                         {"type": "string", "enum": list(FORMATS), "default": "json"}),
        "cursor": _query("cursor", "The next_cursor of the previous page, unchanged, with the same exchange "
                                   "and symbol (and normally the same start and end).",
                         {"type": "string", "pattern": "^[A-Za-z0-9_-]{32}$"}),
    }


def _schemas() -> dict[str, Any]:
    decimal = {"type": "string", "pattern": DECIMAL_PATTERN,
               "description": "Exact decimal as text: no exponent, no trailing zeros."}
    time = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC."}
    day = {"type": ["string", "null"], "format": "date"}

    def obj(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "required": list(properties), "properties": properties}
        if description:
            schema["description"] = description
        return schema

    return {
        "Decimal": decimal,
        "Error": obj({"error": {
            "type": "object", "required": ["message"],
            "properties": {"parameter": {"type": "string", "description": "The query parameter at fault "
                                                                          "(absent for errors of no parameter)."},
                           "message": {"type": "string", "description": "What is wrong and what is accepted."}},
        }}, "Every error: 400 bad parameter, 404 unknown market or path, 500 internal error, 503 the cold "
            "tier cannot be read."),
        "Candle": obj({
            "time": {**time, "description": "Start of the candle, RFC 3339, UTC."},
            "open": _ref("schemas", "Decimal"), "high": _ref("schemas", "Decimal"),
            "low": _ref("schemas", "Decimal"), "close": _ref("schemas", "Decimal"),
            "volume": {**decimal, "description": "Base quantity traded."},
            "quote_volume": {**decimal, "description": "Sum of price x quantity."},
            "buy_volume": {**decimal, "description": "Base quantity bought by takers."},
            "vwap": {**decimal, "description": "quote_volume / volume, rounded half-even to 18 decimals."},
            "trades": {"type": "integer", "minimum": 1},
        }),
        "OhlcvResponse": obj({
            "exchange": {"type": "string", "enum": list(EXCHANGES)}, "symbol": {"type": "string"},
            "timeframe": {"type": "string", "enum": list(TIMEFRAMES)},
            "tier": _TIER,
            "candles": {"type": "array", "items": _ref("schemas", "Candle"), "description": "Oldest first."},
        }),
        "Trade": obj({
            "trade_id": {"type": "string", "pattern": "^[0-9]+$",
                         "description": "The venue's id as text (up to 2^64-1, beyond JavaScript numbers)."},
            "time": {**time, "description": "Exchange time, RFC 3339 with microseconds, UTC."},
            "price": _ref("schemas", "Decimal"), "qty": _ref("schemas", "Decimal"),
            "side": {"type": "string", "enum": ["buy", "sell", "unknown"], "description": "The taker's side."},
            "received_at": {**time, "description": "When ticklake received it, RFC 3339 with microseconds."},
        }),
        "TradesResponse": obj({
            "exchange": {"type": "string", "enum": list(EXCHANGES)}, "symbol": {"type": "string"},
            "tier": _TIER,
            "trades": {"type": "array", "items": _ref("schemas", "Trade"),
                       "description": "In (exchange time, trade id) order."},
            "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page; "
                                                                       "null on the last page."},
            "tail_cursor": {"type": ["string", "null"],
                            "description": "The position after this page's last trade (or the cursor asked with, "
                                           "when the page is empty): pass it as cursor later to get the trades "
                                           "stored since (tailing). Null when nothing was returned or asked."},
        }),
        "Market": obj({
            "exchange": {"type": "string", "enum": list(EXCHANGES)}, "symbol": {"type": "string"},
            "first_day": {**day, "description": "First UTC day with trades; null when none are stored."},
            "last_day": {**day, "description": "Last UTC day with trades; null when none are stored."},
            "trades": {"type": "integer", "minimum": 0},
            "configured": {"type": "boolean", "description": "Whether ticklake is set to collect it."},
            "completeness": {"type": "string", "enum": ["id-sequenced", "reconciled-by-time", "best-effort"],
                             "description": "What the venue's APIs let ticklake guarantee: id-sequenced (every gap "
                                            "found by trade id and filled), reconciled-by-time (every break "
                                            "reconciled over REST by time, complete within the REST window), "
                                            "best-effort (what REST cannot reach back to is counted as lost)."},
        }),
        "SymbolsResponse": obj({"symbols": {"type": "array", "items": _ref("schemas", "Market")}}),
        "HealthComponent": {"type": "object", "required": ["status"], "additionalProperties": True,
                            "properties": {"status": {"type": "string", "enum": ["ok", "degraded", "down"]},
                                           "error": {"type": "string"}}},
        "Health": obj({
            "status": {"type": "string", "enum": ["ok", "degraded", "down"],
                       "description": "The worst component's status."},
            "components": {"type": "object", "additionalProperties": _ref("schemas", "HealthComponent")},
        }),
    }


def openapi_document(max_limit: int) -> dict[str, Any]:
    p = {name: _ref("parameters", name) for name in _parameters(max_limit)}
    errors = {"400": _ref("responses", "BadRequest"), "404": _ref("responses", "NotFound"),
              "500": _ref("responses", "InternalError")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ticklake", "version": API_VERSION,
                 "description": "Exact crypto trades and OHLCV candles from ticklake's warehouse. Prices and "
                                "volumes are decimal strings; times are RFC 3339 in UTC."},
        "paths": {
            "/v1/ohlcv": {"get": {
                "operationId": "ohlcv", "summary": "OHLCV candles of one market, oldest first",
                "parameters": [p["exchange"], p["symbol"], p["timeframe"], p["start"], p["end"],
                               p["candle_limit"], p["format"]],
                "responses": {"200": _files(_tiered(_json("OhlcvResponse", "Candles in [start, end)."))), **errors,
                              "503": _ref("responses", "ColdTierUnavailable")},
            }},
            "/v1/trades": {"get": {
                "operationId": "trades", "summary": "Trades of one market, paginated by cursor",
                "parameters": [p["exchange"], p["symbol"], p["start"], p["end"], p["trade_limit"], p["cursor"],
                               p["format"]],
                "responses": {"200": _files(_tiered(_json("TradesResponse",
                                                          "One page of trades in [start, end), or a file."))),
                              **errors, "503": _ref("responses", "ColdTierUnavailable")},
            }},
            "/v1/stream": {"get": {
                "operationId": "stream",
                "summary": "Live trades or candles as Server-Sent Events (the same path takes WebSocket "
                           "connections, with several subscriptions each: see the README)",
                "description": "Events: subscribed, trades ({trades: [Trade], cursor}), candle ({candle: Candle, "
                               "closed, corrected?, provisional?}), error. Trades and every candle but a "
                               "provisional one (an open candle moved before the write) are already stored: they "
                               "equal what /v1/trades and /v1/ohlcv serve.",
                "parameters": [p["channel"], p["exchange"], p["symbol"], p["timeframe"], p["after"], p["since"]],
                "responses": {"200": {"description": "An event stream that stays open.",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              "400": _ref("responses", "BadRequest"), "500": _ref("responses", "InternalError"),
                              "503": _json("Error", "This process does not ingest: it has no live flow.")},
            }},
            "/v1/symbols": {"get": {
                "operationId": "symbols", "summary": "Markets with stored data, and configured markets",
                "responses": {"200": _json("SymbolsResponse", "Every known market."),
                              "400": _ref("responses", "BadRequest"), "500": _ref("responses", "InternalError")},
            }},
            "/health": {"get": {
                "operationId": "health", "summary": "Status of the warehouse and the running components",
                "responses": {"200": _json("Health", "ok or degraded."), "503": _json("Health", "down."),
                              "400": _ref("responses", "BadRequest")},
            }},
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Prometheus text exposition format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {
                    "type": "object"}}}}},
            }},
            "/": {"get": {
                "operationId": "page", "summary": "The live candlestick page (chart, market and timeframe pickers)",
                "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {
                    "type": "string"}}}}},
            }},
            "/static/app.js": {"get": {
                "operationId": "page_script", "summary": "The page's script",
                "responses": {"200": {"description": "JavaScript.", "content": {"text/javascript": {"schema": {
                    "type": "string"}}}}},
            }},
            "/static/plotly.min.js": {"get": {
                "operationId": "chart_library", "summary": "plotly.js, from the installed plotly package",
                "responses": {"200": {"description": "JavaScript.", "content": {"text/javascript": {"schema": {
                    "type": "string"}}}}},
            }},
            "/docs": {"get": {
                "operationId": "docs", "summary": "This document as a web page",
                "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {
                    "type": "string"}}}}},
            }},
        },
        "components": {
            "parameters": _parameters(max_limit),
            "schemas": _schemas(),
            "responses": {
                "BadRequest": _json("Error", "A query parameter is missing, unknown or invalid; "
                                             "error.parameter names it."),
                "NotFound": _json("Error", "No such market (error.parameter is symbol) or path."),
                "InternalError": _json("Error", "Something failed on the server; the details are in its log."),
                "ColdTierUnavailable": _json("Error", "The range reaches before ClickHouse's retention and the "
                                                      "cold tier (Iceberg) cannot be read right now; retry later. "
                                                      "Ranges inside retention are still served."),
            },
        },
    }


KEY_SCHEMES = ("bearer", "api_key_header")


def with_api_keys(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` for an API that asks for keys (api/auth.py): the security schemes, and the 401 and
    429 answers of every path that needs one (/v1/*; the stream also takes the key as ``api_key``)."""
    components = document["components"]
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (`ticklake keys create`)."},
        "api_key_header": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "The same key as a header of its own."},
        "api_key_query": {"type": "apiKey", "in": "query", "name": "api_key",
                          "description": "/v1/stream only: browsers set no header on a WebSocket or an "
                                         "EventSource."},
    }
    retry_after = {"description": "Whole seconds until the key may be used again.",
                   "schema": {"type": "integer", "minimum": 1}}
    components["responses"]["Unauthorized"] = {
        **_json("Error", "No API key, an unknown or wrong one, or a revoked one."),
        "headers": {"WWW-Authenticate": {"description": "Bearer.", "schema": {"type": "string"}}}}
    components["responses"]["RateLimited"] = {
        **_json("Error", "This key's rate limit is reached (each key has its own); retry after Retry-After."),
        "headers": {"Retry-After": retry_after}}
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        schemes = (*KEY_SCHEMES, "api_key_query") if path == "/v1/stream" else KEY_SCHEMES
        for operation in operations.values():
            operation["security"] = [{scheme: []} for scheme in schemes]
            operation["responses"]["401"] = _ref("responses", "Unauthorized")
            operation["responses"]["429"] = _ref("responses", "RateLimited")
    document["info"]["description"] += (" Every /v1 path needs an API key: Authorization: Bearer <key>, or "
                                        "X-API-Key: <key>.")
    return document


class OpenApiEndpoints:
    def __init__(self, max_limit: int, api_keys: bool = False) -> None:
        document = openapi_document(max_limit)
        if api_keys:
            document = with_api_keys(document)
        self.document_bytes = orjson.dumps(document)
        self.docs_html = render_docs(document)

    def routes(self) -> list[Route]:
        return [Route("/openapi.json", self.openapi, methods=["GET"]), Route("/docs", self.docs, methods=["GET"])]

    async def openapi(self, request: Request) -> JSONBytes:
        reject_unknown(request.query_params, ())
        return JSONBytes(self.document_bytes)

    async def docs(self, request: Request) -> HTMLResponse:
        return HTMLResponse(self.docs_html)
