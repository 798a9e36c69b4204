"""Version 1 of the market-data endpoints: candles, trades and markets.

Candles and trades come from the warm tier (ClickHouse), and ranges older than its retention from the
cold tier (Iceberg), as one series (tiers.py); ``tier`` in the body and the ``X-Ticklake-Tier``
header say which were read. Each request does its reading, and the encoding, in one call on the
thread pool, once admitted (admission.py): both readers block (chdb runs in-process; pyiceberg reads
files) and must never run on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.api.admission import ReadAdmission
from ticklake.api.candle_cache import CandleCache
from ticklake.api.cursor import CursorSeal
from ticklake.api.export import MEDIA_TYPES, Exporter, FileFormat, negotiate
from ticklake.api.formats import day_text, decimal_text, stored_trade_json, time_text, vwap
from ticklake.api.params import OhlcvQuery, TradesQuery, parse_ohlcv, parse_trades, reject_unknown
from ticklake.api.responses import ApiError, JSONBytes
from ticklake.api.tiers import TIER_HEADER, Tier, TierBoundary, TieredReader
from ticklake.lake.cold_reader import ColdTierUnavailable
from ticklake.model import EXCHANGES
from ticklake.settings import ApiSettings, RetentionSettings
from ticklake.symbols import canonical, split_canonical
from ticklake.times import iso_seconds_z
from ticklake.venues import VENUES
from ticklake.warehouse.changes import Market
from ticklake.warehouse.reader import EPOCH, WarehouseReader


def normalize_markets(markets: Iterable[tuple[str, str]]) -> frozenset[Market]:
    """Configured markets in the API's spelling; a wrong one fails at start, not per request."""
    normalized = set()
    for exchange, symbol in markets:
        if exchange.lower() not in EXCHANGES:
            raise ValueError(f"configured market on unknown exchange {exchange!r}")
        normalized.add((exchange.lower(), canonical(*split_canonical(symbol))))
    return frozenset(normalized)


class MarketDataEndpoints:
    def __init__(self, reader: WarehouseReader, max_limit: int, configured: frozenset[Market],
                 tiers: TieredReader | None = None, admission: ReadAdmission | None = None,
                 cache: CandleCache | None = None, cursors: CursorSeal | None = None,
                 exports: ReadAdmission | None = None) -> None:
        self.reader = reader
        self.cursors = cursors or CursorSeal.random()
        self.cache = cache
        self.admission = admission or ReadAdmission.from_settings(ApiSettings())
        self.max_limit = max_limit
        self.configured = configured
        # Without a cold tier every range is read warm (tier "warm"), as before the lake.
        self.tiers = tiers or TieredReader(reader, None, TierBoundary.from_retention(RetentionSettings()))
        # Files (CSV, Parquet, Arrow) of whole ranges, streamed under slots of their own (export.py).
        self.exporter = Exporter(reader, self.tiers, exports or ReadAdmission.for_exports(ApiSettings()), max_limit,
                                 self.cursors, self._require_known_market)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/ohlcv", self.ohlcv, methods=["GET"]),
            Route("/v1/trades", self.trades, methods=["GET"]),
            Route("/v1/symbols", self.symbols, methods=["GET"]),
        ]

    async def ohlcv(self, request: Request) -> Response:
        fmt = negotiate(request)
        if request.method == "HEAD":
            return await self._head(request, fmt, "ohlcv")
        if fmt != "json":
            return await self.exporter.ohlcv(request, cast(FileFormat, fmt))
        query = parse_ohlcv(request.query_params, self.max_limit)
        if self.cache is None:
            body, tier = await self.admission.run(lambda: self._ohlcv_body(query))
            return JSONBytes(body, headers={TIER_HEADER: tier})
        market = (query.exchange, query.symbol)
        key = (query.exchange, query.symbol, query.timeframe, query.start, query.end, query.limit)
        cached = self.cache.get(market, key)
        if cached is not None:
            return JSONBytes(cached, headers={TIER_HEADER: "warm"})
        version = self.cache.version(market)  # before the query: see candle_cache.py
        body, tier = await self.admission.run(lambda: self._ohlcv_body(query))
        if tier == "warm":
            self.cache.put(key, version, body)
        return JSONBytes(body, headers={TIER_HEADER: tier})

    async def trades(self, request: Request) -> Response:
        fmt = negotiate(request)
        if request.method == "HEAD":
            return await self._head(request, fmt, "trades")
        if fmt != "json":
            return await self.exporter.trades(request, cast(FileFormat, fmt))
        query = parse_trades(request.query_params, self.max_limit, self.cursors)
        body, tier = await self.admission.run(lambda: self._trades_body(query))
        return JSONBytes(body, headers={TIER_HEADER: tier})

    async def _head(self, request: Request, fmt: str, kind: str) -> Response:
        """HEAD: the status and headers a GET would get, as far as they are known without reading any data
        (a bad parameter is a 400, an unknown market a 404; no body, no tier header)."""
        headers: dict[str, str] = {}
        query: OhlcvQuery | TradesQuery
        if fmt == "json":
            query = (parse_ohlcv(request.query_params, self.max_limit) if kind == "ohlcv"
                     else parse_trades(request.query_params, self.max_limit, self.cursors))
        else:
            file_format = cast(FileFormat, fmt)
            query, name = (self.exporter.ohlcv_query(request, file_format) if kind == "ohlcv"
                           else self.exporter.trades_query(request, file_format))
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        if (query.exchange, query.symbol) not in self.configured:
            await self.admission.run(lambda: self._require_known_market(query.exchange, query.symbol))
        media_type = "application/json" if fmt == "json" else MEDIA_TYPES[cast(FileFormat, fmt)]
        return Response(media_type=media_type, headers=headers)

    async def symbols(self, request: Request) -> JSONBytes:
        reject_unknown(request.query_params, ())
        return JSONBytes(await self.admission.run(self._symbols_body))

    # -- blocking work, on the thread pool -------------------------------------------------------
    def _ohlcv_body(self, query: OhlcvQuery) -> tuple[bytes, Tier]:
        try:
            rows, tier = self.tiers.ohlcv_rows(query.exchange, query.symbol, query.timeframe, query.start,
                                               query.end, query.limit)
        except ColdTierUnavailable:
            raise ApiError(503, _cold_unavailable(self.tiers.boundary.candles(query.timeframe))) from None
        if not rows:
            self._require_known_market(query.exchange, query.symbol)
        # The warehouse already wrote every decimal as its exact shortest text; only VWAP is computed here.
        return orjson.dumps({
            "exchange": query.exchange,
            "symbol": query.symbol,
            "timeframe": query.timeframe,
            "tier": tier,
            "candles": [
                {
                    "time": iso_seconds_z(start),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                    "quote_volume": quote_volume,
                    "buy_volume": buy_volume,
                    "vwap": decimal_text(vwap(Decimal(quote_volume), Decimal(volume))),
                    "trades": trades,
                }
                for start, open_, high, low, close, volume, quote_volume, buy_volume, trades in rows
            ],
        }), tier

    def _trades_body(self, query: TradesQuery) -> tuple[bytes, Tier]:
        # One row more than asked tells whether another page exists without a second query.
        try:
            if self.tiers.trades_are_warm(query.start, query.after):  # (asks the cold tier what it holds)
                return self._warm_trades_body(query), "warm"
            rows, tier = self.tiers.trades(query.exchange, query.symbol, query.start, query.end, query.limit + 1,
                                           after=query.after)
        except ColdTierUnavailable:
            raise ApiError(503, _cold_unavailable(self.tiers.boundary.trades())) from None
        if not rows and query.after is None:
            self._require_known_market(query.exchange, query.symbol)
        page = rows[: query.limit]
        tail = (page[-1].ts_us, page[-1].trade_id) if page else query.after
        tail_cursor = self.cursors.encode(query.exchange, query.symbol, *tail) if tail else None
        return orjson.dumps({
            "exchange": query.exchange,
            "symbol": query.symbol,
            "tier": tier,
            "trades": [stored_trade_json(t) for t in page],
            "next_cursor": tail_cursor if len(rows) > query.limit else None,
            "tail_cursor": tail_cursor,
        }), tier

    def _warm_trades_body(self, query: TradesQuery) -> bytes:
        """The same body as ``_trades_body``, from rows ClickHouse wrote as JSON (trades_json.sql)."""
        rows = self.reader.trades_json(query.exchange, query.symbol, query.start, query.end, query.limit + 1,
                                       after=query.after)
        if not rows and query.after is None:
            self._require_known_market(query.exchange, query.symbol)
        page = rows[: query.limit]
        tail = query.after
        if page:
            last = orjson.loads(page[-1])
            tail = ((datetime.fromisoformat(last["time"]) - EPOCH) // timedelta(microseconds=1), int(last["trade_id"]))
        tail_cursor = self.cursors.encode(query.exchange, query.symbol, *tail) if tail else None
        next_cursor = tail_cursor if len(rows) > query.limit else None
        head = orjson.dumps({"exchange": query.exchange, "symbol": query.symbol, "tier": "warm"})
        return b"".join((head[:-1], b',"trades":[', b",".join(page), b'],"next_cursor":', orjson.dumps(next_cursor),
                         b',"tail_cursor":', orjson.dumps(tail_cursor), b"}"))

    def _symbols_body(self) -> bytes:
        stored = {(m.exchange, m.symbol): m for m in self.reader.markets()}
        symbols = []
        for exchange, symbol in sorted(stored.keys() | self.configured):
            market = stored.get((exchange, symbol))
            symbols.append({
                "exchange": exchange,
                "symbol": symbol,
                "first_day": day_text(market.first_day) if market else None,
                "last_day": day_text(market.last_day) if market else None,
                "trades": market.trades if market else 0,
                "configured": (exchange, symbol) in self.configured,
                "completeness": VENUES[exchange].completeness,
            })
        return orjson.dumps({"symbols": symbols})

    def _require_known_market(self, exchange: str, symbol: str) -> None:
        """404 for a market neither configured nor stored: an empty answer would hide a typo.

        Only asked when a query found nothing, so known markets never pay for it.
        """
        if (exchange, symbol) in self.configured:
            return
        if any(m.exchange == exchange and m.symbol == symbol for m in self.reader.markets()):
            return
        raise ApiError(404, f"no data for {exchange} {symbol}; see /v1/symbols", "symbol")


def _cold_unavailable(boundary: datetime) -> str:
    return (f"times before {time_text(boundary)} are served from the cold tier (Iceberg), which cannot be read "
            "right now; retry later, or ask for times from then on (served by ClickHouse)")
