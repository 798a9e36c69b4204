"""A Python client for the ticklake HTTP API, returning pandas DataFrames.

Prices and volumes arrive as exact decimal text and become ``decimal.Decimal`` objects (an ``object``
column), so nothing is rounded; ``as_float=True`` gives float64 columns for speed instead. Needs the
``client`` extra: ``pip install 'ticklake[client]'`` (httpx and pandas).

Large ranges: ``trades(..., format="arrow")`` (or ``"parquet"``, and ``ohlcv`` likewise) fetches the
range as one file export instead of paging through JSON, and returns the same frame (~12 times faster
for a million trades, bench).

A frame's ``attrs["tier"]`` says where the server read it: ``"warm"`` (ClickHouse), ``"cold"``
(the Iceberg lake, for times older than ClickHouse's retention) or ``"warm+cold"``.

    >>> from ticklake.client import TicklakeClient
    >>> with TicklakeClient("http://127.0.0.1:8000") as api:  # or TICKLAKE_URL, or the default
    ...     candles = api.ohlcv("binance", "BTC/USDT", "1h", start="2026-01-01")

Live data: ``async for message in api.stream("candles", "binance", "BTC/USDT", "1m")`` yields the
stream's messages (``/v1/stream``: "trades" batches and "candle" updates), reconnecting by itself
and resuming where it stopped, so that nothing is missed or repeated.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("ticklake.client needs httpx: pip install 'ticklake[client]'") from exc

if TYPE_CHECKING:
    import pandas as pd

FileFormat = Literal["json", "parquet", "arrow"]
"""How ``trades`` and ``ohlcv`` fetch: JSON pages, or one Parquet file or Arrow IPC stream of the range."""
_TIME_UNIT = "us"  # what pandas parses RFC 3339 text with microseconds to

TimeArg = datetime | str | int | None
"""A datetime (naive means UTC), RFC 3339 / ISO 8601 text, or epoch milliseconds."""

CANDLE_DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "buy_volume", "vwap")
TRADE_DECIMALS = ("price", "qty")
CANDLE_COLUMNS = (*CANDLE_DECIMALS, "trades")
TRADE_COLUMNS = ("time", "trade_id", "price", "qty", "side", "received_at")
DEFAULT_PAGE_SIZE = 1000  # the server's default page size; at most its api.max_limit (5000 by default)
DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "TICKLAKE_URL"  # the base URL when none is given
KEY_VARIABLE = "TICKLAKE_API_KEY"  # the API key when none is given


class TicklakeAPIError(Exception):
    """The API refused a request: ``status`` is the HTTP status, ``parameter`` the query parameter at
    fault (None when no parameter is), ``message`` the API's explanation."""

    def __init__(self, status: int, parameter: str | None, message: str) -> None:
        super().__init__(f"HTTP {status}" + (f" ({parameter})" if parameter else "") + f": {message}")
        self.status = status
        self.parameter = parameter
        self.message = message


def _pandas() -> ModuleType:
    # Imported on first use: the rest of ticklake must not need pandas.
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("TicklakeClient needs pandas for DataFrames: pip install 'ticklake[client]'") from exc
    module: ModuleType = pandas
    return module


def _combined_tier(tiers: Iterable[str | None]) -> str | None:
    """The tier of several pages: "warm+cold" when both served some; None from a server that does
    not say."""
    parts = {part for tier in tiers if tier for part in tier.split("+")}
    if not parts:
        return None
    return "warm+cold" if parts == {"warm", "cold"} else "+".join(sorted(parts))


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds a 503 asks to wait (at most a minute), or None when it does not ask."""
    try:
        return min(60.0, max(0.0, float(response.headers["Retry-After"])))
    except (KeyError, ValueError):
        return None


def _waits(status: int) -> bool:
    """An answer to ask again after its Retry-After: the server is busy (503), or the key is over its
    rate limit (429)."""
    return status in (429, 503)


def _time_param(value: TimeArg) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # pandas.Timestamp is a datetime too
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    if isinstance(value, bool):
        raise TypeError("a time must be a datetime, text or epoch milliseconds, not a bool")
    return str(value)


def _decimal_column(pd: ModuleType, column: pa.ChunkedArray, as_float: bool) -> Any:
    """An exported decimal column as the JSON path builds it: the same exact ``Decimal`` objects (parsed
    from the same shortest text), or float64 parsed from that text (Arrow's own decimal-to-float cast
    may differ from Python's correctly rounded ``float(text)`` in the last bit)."""
    texts = column.cast(pa.string())  # "64123.100000000000000000", or "1.50000E-7" below 1e-6
    if as_float:
        return pd.array(texts.cast(pa.float64()).to_numpy(), dtype="float64")
    plain = pc.replace_substring_regex(texts, r"\.?0+$", "").to_pylist()
    for i in pc.indices_nonzero(pc.match_substring(texts, "E")).to_pylist():  # rare: redo exactly
        text = format(Decimal(texts[i].as_py()), "f")
        plain[i] = text.rstrip("0").rstrip(".") if "." in text else text
    return pd.array([Decimal(text) for text in plain], dtype=object)


def _times(pd: ModuleType, column: pa.ChunkedArray) -> Any:
    # The JSON path parses RFC 3339 text: the same instants at the same resolution.
    return pd.to_datetime(column.to_pandas(), utc=True).array.as_unit(_TIME_UNIT)


def _trade_frame(table: pa.Table, as_float: bool, tier: str | None) -> pd.DataFrame:
    pd = _pandas()
    columns: dict[str, Any] = {
        "time": _times(pd, table["time"]),
        "trade_id": pd.array(table["trade_id"].to_numpy(), dtype="uint64"),
        **{name: _decimal_column(pd, table[name], as_float) for name in TRADE_DECIMALS},
        "side": table["side"].to_pylist(),
        "received_at": _times(pd, table["received_at"]),
    }
    frame = pd.DataFrame(columns, columns=list(TRADE_COLUMNS))
    frame.attrs["tier"] = tier
    return frame


def _candle_frame(table: pa.Table, as_float: bool, tier: str | None) -> pd.DataFrame:
    pd = _pandas()
    index = pd.DatetimeIndex(_times(pd, table["time"]), name="time")
    columns: dict[str, Any] = {name: _decimal_column(pd, table[name], as_float) for name in CANDLE_DECIMALS}
    columns["trades"] = pd.array(table["trades"].to_numpy(), dtype="int64")
    frame = pd.DataFrame(columns, index=index, columns=list(CANDLE_COLUMNS))
    frame.attrs["tier"] = tier
    return frame


class TicklakeClient:
    """``base_url``: the API's address (default: the ``TICKLAKE_URL`` environment variable, else
    http://127.0.0.1:8000). ``busy_retries``: how many times a request the server is too busy for (503
    with Retry-After, or 429 when the API key is over its rate limit) is asked again after the wait it
    names, before ``TicklakeAPIError`` is raised. ``api_key``: sent with every request (default: the
    ``TICKLAKE_API_KEY`` environment variable; an API bound to loopback needs none)."""

    def __init__(self, base_url: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, busy_retries: int = 3,
                 api_key: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get(KEY_VARIABLE) or None
        self._auth_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers=self._auth_headers)
        self.busy_retries = busy_retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- endpoints ---------------------------------------------------------------------------------
    def ohlcv(self, exchange: str, symbol: str, timeframe: str = "1m", start: TimeArg = None,
              end: TimeArg = None, limit: int | None = None, *, as_float: bool = False,
              format: FileFormat = "json") -> pd.DataFrame:
        """Candles in [start, end), indexed by their start (tz-aware UTC), oldest first.

        With ``start``, the first ``limit`` candles from it; without, the newest ``limit`` before ``end``
        (the server's default limit applies when ``limit`` is None). ``attrs["tier"]``: the tier that
        served it ("warm", "cold" or "warm+cold").

        ``format="parquet"`` or ``"arrow"`` fetches one file of the range instead (the server's
        default limit does not apply to it: without ``limit``, every candle from ``start``, or from the
        first stored one); the frame is the same as JSON's for the same candles.
        """
        if format != "json":
            table, tier = self._file("/v1/ohlcv", {
                "exchange": exchange, "symbol": symbol, "timeframe": timeframe, "start": _time_param(start),
                "end": _time_param(end), "limit": limit}, format)
            return _candle_frame(table, as_float, tier)
        body = self._get("/v1/ohlcv", {"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                                       "start": _time_param(start), "end": _time_param(end), "limit": limit})
        pd = _pandas()
        candles = body["candles"]
        index = pd.DatetimeIndex(pd.to_datetime([c["time"] for c in candles], utc=True), name="time")
        columns: dict[str, Any] = {name: self._decimals(pd, [c[name] for c in candles], as_float)
                                   for name in CANDLE_DECIMALS}
        columns["trades"] = pd.array([c["trades"] for c in candles], dtype="int64")
        frame = pd.DataFrame(columns, index=index, columns=list(CANDLE_COLUMNS))
        frame.attrs["tier"] = body.get("tier")
        return frame

    def trades(self, exchange: str, symbol: str, start: TimeArg = None, end: TimeArg = None,
               limit: int | None = None, max_rows: int | None = None, *, as_float: bool = False,
               format: FileFormat = "json") -> pd.DataFrame:
        """Trades in [start, end) in (exchange time, trade id) order, following ``next_cursor`` until the
        last page or ``max_rows`` rows. ``limit`` is the page size (server default when None).

        Columns: time and received_at (tz-aware UTC), trade_id (uint64), price and qty (Decimal, or
        float64 with ``as_float``), side. ``attrs["tier"]``: the tiers that served its pages ("warm",
        "cold" or "warm+cold").

        ``format="parquet"`` or ``"arrow"`` fetches the range as one file (at most ``max_rows`` rows;
        ``limit``, a page size, does not apply) instead of paging through JSON: the same frame, faster
        for large ranges (the Arrow stream costs the server least).
        """
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if format != "json":
            table, tier = self._file("/v1/trades", {"exchange": exchange, "symbol": symbol,
                                                    "start": _time_param(start), "end": _time_param(end),
                                                    "limit": max_rows}, format)
            return _trade_frame(table, as_float, tier)
        rows: list[dict[str, Any]] = []
        tiers = []
        for page, tier in self._trade_pages(exchange, symbol, start, end, limit, max_rows):
            rows.extend(page)
            tiers.append(tier)
        pd = _pandas()
        columns: dict[str, Any] = {
            "time": pd.to_datetime([r["time"] for r in rows], utc=True),
            "trade_id": pd.array([int(r["trade_id"]) for r in rows], dtype="uint64"),
            **{name: self._decimals(pd, [r[name] for r in rows], as_float) for name in TRADE_DECIMALS},
            "side": [r["side"] for r in rows],
            "received_at": pd.to_datetime([r["received_at"] for r in rows], utc=True),
        }
        frame = pd.DataFrame(columns, columns=list(TRADE_COLUMNS))
        frame.attrs["tier"] = _combined_tier(tiers)
        return frame

    def iter_trades(self, exchange: str, symbol: str, start: TimeArg = None, end: TimeArg = None,
                    limit: int | None = None, max_rows: int | None = None) -> Iterator[dict[str, Any]]:
        """The raw trade records (as the API sends them), page after page."""
        for page, _tier in self._trade_pages(exchange, symbol, start, end, limit, max_rows):
            yield from page

    def _trade_pages(self, exchange: str, symbol: str, start: TimeArg, end: TimeArg, limit: int | None,
                     max_rows: int | None) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Each page's records and the tier that served it."""
        remaining = max_rows
        cursor: str | None = None
        while remaining is None or remaining > 0:
            # Never ask for more than is still wanted: the last page is cut to size on the server.
            page_size = limit if remaining is None else min(limit or DEFAULT_PAGE_SIZE, remaining)
            body = self._get("/v1/trades", {"exchange": exchange, "symbol": symbol, "start": _time_param(start),
                                            "end": _time_param(end), "limit": page_size, "cursor": cursor})
            page = body["trades"]
            if remaining is not None:
                page = page[:remaining]
                remaining -= len(page)
            yield page, body.get("tier")
            cursor = body["next_cursor"]
            if cursor is None or not page:
                return

    def symbols(self) -> pd.DataFrame:
        """Known markets: first/last day with trades (None when none yet), trade count, configured, and the
        venue's completeness guarantee (id-sequenced, reconciled-by-time, best-effort)."""
        pd = _pandas()
        markets = self._get("/v1/symbols", {})["symbols"]
        for market in markets:
            for column in ("first_day", "last_day"):
                market[column] = date.fromisoformat(market[column]) if market[column] else None
        return pd.DataFrame(markets, columns=["exchange", "symbol", "first_day", "last_day", "trades",
                                              "configured", "completeness"])

    def health(self) -> dict[str, Any]:
        """The /health document; a "down" service answers 503 but is returned, not raised."""
        response = self._http.get("/health")
        if response.status_code not in (200, 503):
            self._raise(response)
        result: dict[str, Any] = response.json()
        return result

    async def stream(self, channel: str, exchange: str, symbol: str, timeframe: str | None = None, *,
                     after: str | None = None, since: TimeArg = None,
                     reconnect_delay_s: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """The live messages of one subscription (``channel`` "trades", or "candles" with ``timeframe``),
        as the server sends them: {"type": "trades", "trades": [...], "cursor": ...} or {"type": "candle",
        "candle": {...}, "closed": ..., "corrected": ...}.

        ``after`` (a trade cursor) or ``since`` (a time, candles) first replays what is stored from
        there. When the connection ends (a restart, a network fault, or the server dropping a reader
        that fell behind), it reconnects after ``reconnect_delay_s`` and resumes from the last cursor
        (or candle) it yielded: no trade is missed or repeated; the last candle seen may come again, with
        its state then (a candle message is the whole bucket, never a delta). A bad subscription raises
        ``TicklakeAPIError`` (status 400).
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        url = "ws" + self.base_url.removeprefix("http") + "/v1/stream"
        request: dict[str, Any] = {"op": "subscribe", "channel": channel, "exchange": exchange, "symbol": symbol}
        if timeframe is not None:
            request["timeframe"] = timeframe
        if after is not None:
            request["after"] = after
        if since is not None:
            request["since"] = _time_param(since)
        while True:
            try:
                # The key as a header (a URL may end up in a proxy's log); browsers, which cannot set
                # one on a WebSocket, use the api_key query parameter instead.
                async with connect(url, additional_headers=self._auth_headers) as connection:
                    await connection.send(json.dumps(request))
                    async for text in connection:
                        message = json.loads(text)
                        kind = message.get("type")
                        if kind == "error":
                            raise TicklakeAPIError(400, message.get("parameter"), str(message.get("error")))
                        if kind == "trades":
                            request["after"] = message["cursor"]
                        elif kind == "candle":
                            request["since"] = message["candle"]["time"]
                        else:
                            continue
                        yield message
            except InvalidStatus as exc:  # refused before the stream opened
                refused = exc.response
                if refused.status_code in (401, 403):  # no key, a wrong or revoked one: retrying will not help
                    try:
                        reason = str(json.loads(refused.body or b"")["error"]["message"])
                    except (ValueError, KeyError, TypeError):
                        reason = refused.reason_phrase
                    raise TicklakeAPIError(refused.status_code, None, reason) from None
                if _waits(refused.status_code):
                    try:
                        await asyncio.sleep(min(60.0, float(refused.headers["Retry-After"])))
                        continue
                    except (KeyError, ValueError):
                        pass
            except (ConnectionClosed, InvalidHandshake, OSError):
                pass
            await asyncio.sleep(reconnect_delay_s)

    # -- plumbing ----------------------------------------------------------------------------------
    @staticmethod
    def _decimals(pd: ModuleType, texts: list[str], as_float: bool) -> Any:
        if as_float:
            return pd.array([float(t) for t in texts], dtype="float64")
        return pd.array([Decimal(t) for t in texts], dtype=object)

    def _file(self, path: str, params: Mapping[str, Any], format: FileFormat) -> tuple[pa.Table, str | None]:
        """One file export of ``path`` read into an Arrow table, and the tier that served it."""
        if format not in ("parquet", "arrow"):
            raise ValueError(f"format must be json, parquet or arrow, not {format!r}")
        response = self._answered(path, {**params, "format": format})
        # (httpx raises on a body cut short by a failure on the server: no partial frame is returned.)
        data = pa.py_buffer(response.content)
        table = pq.read_table(pa.BufferReader(data)) if format == "parquet" else pa.ipc.open_stream(data).read_all()
        return table, response.headers.get("X-Ticklake-Tier")

    def _answered(self, path: str, params: Mapping[str, Any]) -> httpx.Response:
        """GET ``path`` until it is answered 200 (raising the API's error otherwise). A busy server answers
        503 with Retry-After before reading anything, and a key over its rate 429: wait as told, ask again,
        up to ``busy_retries`` times."""
        query = {k: v for k, v in params.items() if v is not None}
        response = self._http.get(path, params=query)
        for _ in range(self.busy_retries):
            wait = _retry_after(response) if _waits(response.status_code) else None
            if wait is None:
                break
            time.sleep(wait)
            response = self._http.get(path, params=query)
        if response.status_code != 200:
            self._raise(response)
        return response

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        response = self._answered(path, params)
        body: dict[str, Any] = response.json()
        return body

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        parameter: str | None = None
        try:
            error = response.json()["error"]
            message = str(error["message"])
            parameter = error.get("parameter")
        except (ValueError, KeyError, TypeError):
            message = response.text.strip() or response.reason_phrase
        raise TicklakeAPIError(response.status_code, parameter, message)

