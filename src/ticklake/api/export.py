"""File exports: ``/v1/trades`` and ``/v1/ohlcv`` as CSV, Parquet or an Arrow IPC stream, streamed.

**What a file is.** JSON answers keep their pages and cursors. A file is the whole range [start, end)
in one response, oldest first, across the warm and cold tiers (tiers.py); ``limit``, when given, caps its
rows (no default cap), and a trades ``cursor`` starts it after that trade. One exception keeps a file
the same answer as its JSON: candles asked with a ``limit`` and no ``start`` are the newest ``limit``
before ``end`` (at most ``api.max_limit``). Columns and values are the JSON answer's: CSV holds the
very same text (exact decimals, RFC 3339 times); Parquet and Arrow hold exact decimals at the
warehouse's scale (``decimal128(38, 18)``; a candle's quote volume ``decimal256(76, 36)``) and times as
``timestamp[us, UTC]``.

**Choosing.** ``format`` (json, csv, parquet, arrow) wins; else the Accept header (``text/csv``,
``application/vnd.apache.parquet``, ``application/vnd.apache.arrow.stream``, ``application/json``);
else JSON.

**Streaming.** The range is read in chunks (``TRADE_CHUNK_ROWS`` trades, keyset pages by (exchange
time, trade id), each warm one also bounded by a time window; ``CANDLE_CHUNK_ROWS`` candles): a chunk
is read on a thread of the export's own while the one before is encoded on the thread pool and the one
before that is sent by the event loop (chdb and pyiceberg block; none of it runs on the loop). Memory
holds three chunks at most, whatever the range. Warm chunks come from ClickHouse as Arrow (for CSV, as
the JSON answer's text, written by ClickHouse: trades_export_text.sql), cold ones from the Iceberg
reader; pyarrow writes the file (CSV writer, Parquet row groups, IPC batches). Every chunk is its own
query under the per-query limits (``api.query_timeout_s``, memory): an export of any length is never
stopped by the time limit. HEAD is answered by v1.py, without reading any data.

**Slots.** An export takes one of ``api.max_concurrent_exports`` slots (its own connection, platform.py),
not a read slot, for as long as it streams: other readers never wait behind it. Its chunk queries run on
the reading threads' lowered priority like every read, so ingestion keeps the CPU first.

**Failures.** Everything found before the first byte (a bad parameter, an unknown market, a cold tier
that cannot be read, no free slot) is a normal error answer. A failure after the first byte cannot
change the status: the response is cut short without the end of its chunked body, so the client's HTTP
library reports an incomplete transfer (curl: "transfer closed with outstanding read data remaining";
httpx: ``RemoteProtocolError``), and it is logged. A client that goes away stops the export after the
chunk being read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ticklake.api.admission import ReadAdmission
from ticklake.api.cursor import CursorSeal
from ticklake.api.formats import decimal_text, vwap
from ticklake.api.params import OhlcvQuery, TradesQuery, parse_ohlcv, parse_trades
from ticklake.api.responses import ApiError, shown
from ticklake.api.tiers import TIER_HEADER, Tier, TieredReader
from ticklake.lake.cold_reader import ColdTierUnavailable, decimal_texts
from ticklake.times import iso_seconds_z
from ticklake.warehouse.reader import EPOCH, TIMEFRAMES, CandleRow, WarehouseReader

log = logging.getLogger(__name__)

FileFormat = Literal["csv", "parquet", "arrow"]
FORMATS = ("json", "csv", "parquet", "arrow")
MEDIA_TYPES: dict[FileFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
_ACCEPTED = {"application/json": "json", "text/csv": "csv", "application/vnd.apache.parquet": "parquet",
             "application/x-parquet": "parquet", "application/vnd.apache.arrow.stream": "arrow",
             "*/*": "json", "application/*": "json"}
_EXTENSIONS: dict[FileFormat, str] = {"csv": "csv", "parquet": "parquet", "arrow": "arrows"}

# Rows per chunk: 100,000 trades are ~4 MB as Arrow, ~12 MB as CSV text. Over 10M trades (bench, export
# stage) the API's peak RSS rose by ~150 MB with 100,000-row chunks, ~230 MB with 200,000 (Arrow
# exported 4.3 against 5.3M rows/s), ~115 MB with 50,000 (2.2M rows/s, before the chunks' time windows).
TRADE_CHUNK_ROWS = 100_000
CANDLE_CHUNK_ROWS = 50_000
SEND_BYTES = 1 << 20  # a chunk's bytes are sent in slices of this size
MAX_FILE_ROWS = 10**15  # "no cap": limit's largest accepted value in a file request

MICROS = pa.timestamp("us", tz="UTC")
PRICE = pa.decimal128(38, 18)  # silver's price and quantity (warehouse migrations 0001)
QUOTE = pa.decimal256(76, 36)  # gold's quote volume: price x quantity summed without rounding


def _fields(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind, nullable=False) for name, kind in columns])


TRADE_SCHEMA = _fields(("trade_id", pa.uint64()), ("time", MICROS), ("price", PRICE), ("qty", PRICE),
                       ("side", pa.string()), ("received_at", MICROS))
TRADE_TEXT_SCHEMA = _fields(("trade_id", pa.uint64()), ("time", pa.string()), ("price", pa.string()),
                            ("qty", pa.string()), ("side", pa.string()), ("received_at", pa.string()))
CANDLE_DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "buy_volume", "vwap")
CANDLE_SCHEMA = _fields(("time", MICROS), *((name, QUOTE if name == "quote_volume" else PRICE)
                                            for name in CANDLE_DECIMALS), ("trades", pa.int64()))
CANDLE_TEXT_SCHEMA = _fields(("time", pa.string()), *((name, pa.string()) for name in CANDLE_DECIMALS),
                             ("trades", pa.int64()))


# -- choosing the format ------------------------------------------------------------------------------
def negotiate(request: Request) -> str:
    """json, csv, parquet or arrow: the ``format`` parameter, else the Accept header, else json."""
    values = request.query_params.getlist("format")
    if values:
        if len(values) > 1:
            raise ApiError(400, f"format given {len(values)} times; give it once", "format")
        name = values[0].strip().lower()
        if name not in FORMATS:
            raise ApiError(400, f"unknown format {shown(values[0])}; accepted: {', '.join(FORMATS)} (or ask with "
                                "the Accept header: application/json, text/csv, application/vnd.apache.parquet, "
                                "application/vnd.apache.arrow.stream)", "format")
        return name
    return _from_accept(request.headers.get("accept", ""))


def _from_accept(header: str) -> str:
    """The format of the most preferred media range we serve (JSON when none is: lenient, as a browser's
    ``text/html,...`` asks for a page, and an API answering 406 to it helps nobody)."""
    ranges: list[tuple[float, int, str]] = []
    for position, item in enumerate(header[:1000].split(",")):
        media, *options = (part.strip() for part in item.split(";"))
        quality = 1.0
        for option in options:
            key, _, value = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media.lower() in _ACCEPTED:
            ranges.append((-quality, position, _ACCEPTED[media.lower()]))
    return min(ranges)[2] if ranges else "json"


# -- writing the file ---------------------------------------------------------------------------------
class _Sink:
    """A file-like object that keeps what pyarrow writes until it is taken."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _Writer(Protocol):
    def write(self, table: pa.Table) -> None: ...
    def close(self) -> None: ...


def _open_writer(fmt: FileFormat, schema: pa.Schema, sink: _Sink) -> _Writer:
    target = pa.PythonFile(sink, mode="w")
    writer: _Writer
    if fmt == "csv":
        # No value of ours holds a comma, a quote or a line break: nothing needs quoting, and "none"
        # would fail loudly if something ever did.
        writer = pcsv.CSVWriter(target, schema, write_options=pcsv.WriteOptions(
            quoting_style="none", quoting_header="none"))
    elif fmt == "parquet":
        # zstd: a third smaller than snappy here, and no slower to write (measured on trades).
        writer = pq.ParquetWriter(target, schema, compression="zstd")
    else:
        writer = pa.ipc.new_stream(target, schema)
    return writer


# -- reading the range --------------------------------------------------------------------------------
@dataclass
class _Progress:
    tier: Tier = "warm"
    rows: int = 0


def _cold_trades(rows: pa.Table, text: bool) -> pa.Table:
    """A cold chunk (lake/cold_reader.py's columns) in the export's columns: typed, or the JSON answer's text."""
    if not text:
        return pa.Table.from_arrays(
            [rows["trade_id"], rows["ts"].cast(MICROS), rows["price"].cast(PRICE), rows["qty"].cast(PRICE),
             rows["side"], rows["received_at"].cast(MICROS)], schema=TRADE_SCHEMA)
    return pa.Table.from_arrays(
        [rows["trade_id"], _time_texts(rows["ts"]), pa.array(decimal_texts(rows["price"]), pa.string()),
         pa.array(decimal_texts(rows["qty"]), pa.string()), rows["side"], _time_texts(rows["received_at"])],
        schema=TRADE_TEXT_SCHEMA)


def _time_texts(column: pa.ChunkedArray) -> pa.Array:
    """RFC 3339 to the microsecond, as the JSON answer writes it: ``2026-01-02T03:04:05.000123Z``."""
    text = column.cast(pa.timestamp("us")).cast(pa.string())  # "2026-01-02 03:04:05.000123"
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, 10, 11, "T"), "Z", "")


def _keys(table: pa.Table, text: bool) -> tuple[int, int, int]:
    """(first ts_us, last ts_us, last trade_id) of a chunk: its time span, and where the next starts."""
    first, last = table.slice(0, 1).to_pylist()[0], table.slice(table.num_rows - 1).to_pylist()[0]
    times = [datetime.fromisoformat(row["time"]) if text else row["time"] for row in (first, last)]
    first_us, last_us = ((moment - EPOCH) // timedelta(microseconds=1) for moment in times)
    return first_us, last_us, int(last["trade_id"])


def trade_chunks(reader: WarehouseReader, tiers: TieredReader, query: TradesQuery, limit: int | None, text: bool,
                 progress: _Progress) -> Iterator[pa.Table]:
    """The trades of the whole range, chunk after chunk, cold piece first (``tiers.trade_pieces``).

    A warm chunk's query also has an upper time bound: the time the previous chunk spanned, from where
    it ended, with a margin. Open-ended, a chunk's query planned and began every later part of the
    market (11 over 10M generated trades; months of partitions in a long history): 200,000 rows took
    38 ms instead of 22 (measured). A window that holds too few rows is followed by an open-ended query
    for the rest, so a chunk costs at most two queries."""
    chunk_rows = TRADE_CHUNK_ROWS
    pieces = tiers.trade_pieces(query.start, query.end, query.after)
    progress.tier = pieces[0][0] if len(pieces) == 1 else "warm+cold"
    after = query.after
    for tier, start, end in pieces:
        lower = start
        window: timedelta | None = None
        while limit is None or progress.rows < limit:
            wanted = chunk_rows if limit is None else min(chunk_rows, limit - progress.rows)
            upper = end
            if tier == "warm":
                if window is not None and after is not None:
                    guess = EPOCH + timedelta(microseconds=after[0]) + window
                    upper = guess if end is None or guess < end else end
                chunk = reader.trades_arrow(query.exchange, query.symbol, lower, upper, wanted, after, text=text)
            else:
                assert tiers.cold is not None
                chunk = _cold_trades(tiers.cold.trades_table(query.exchange, query.symbol, lower, end, wanted,
                                                             after), text)
            progress.rows += chunk.num_rows
            yield chunk
            if chunk.num_rows:
                first_us, last_us, last_id = _keys(chunk, text)
                after = (last_us, last_id)
                if chunk.num_rows == wanted:
                    window = max(timedelta(microseconds=last_us - first_us), timedelta(milliseconds=1)) * 1.25
                    continue
            if upper == end:
                break  # fewer rows than asked from the whole rest of the piece: its end
            lower, window = upper, None  # the window is read out: the rest of the chunk, open-ended
        after = None  # every warm row of [B, end) comes after a cursor in the cold piece


def _candle_table(rows: list[CandleRow], text: bool) -> pa.Table:
    starts = [row[0] for row in rows]
    texts = {name: [row[i] for row in rows] for i, name in enumerate(CANDLE_DECIMALS[:-1], 1)}
    # The warehouse wrote every decimal as exact text; VWAP is computed as the JSON answer computes it.
    texts["vwap"] = [decimal_text(vwap(Decimal(q), Decimal(v))) for q, v in zip(texts["quote_volume"],
                                                                                   texts["volume"], strict=True)]
    trades = pa.array([row[8] for row in rows], pa.int64())
    if text:
        return pa.Table.from_arrays([pa.array([iso_seconds_z(s) for s in starts], pa.string()),
                                     *(pa.array(texts[n], pa.string()) for n in CANDLE_DECIMALS), trades],
                                    schema=CANDLE_TEXT_SCHEMA)
    return pa.Table.from_arrays(
        [pa.array([s * 1_000_000 for s in starts], pa.int64()).cast(MICROS),
         *(pa.array(texts[n], pa.string()).cast(QUOTE if n == "quote_volume" else PRICE) for n in CANDLE_DECIMALS),
         trades], schema=CANDLE_SCHEMA)


def candle_chunks(tiers: TieredReader, query: OhlcvQuery, limit: int | None, newest: bool, text: bool,
                  progress: _Progress) -> Iterator[pa.Table]:
    """The candles of the whole range from start (the first stored without one), chunk after chunk;
    with ``newest``, the newest ``limit`` before end in one chunk."""
    chunk_rows = CANDLE_CHUNK_ROWS
    if newest:
        assert limit is not None
        rows, progress.tier = tiers.ohlcv_rows(query.exchange, query.symbol, query.timeframe, None, query.end, limit)
        progress.rows = len(rows)
        yield _candle_table(rows, text)
        return
    start = query.start or EPOCH
    progress.tier = tiers.candle_tier(query.timeframe, start, query.end)
    while limit is None or progress.rows < limit:
        wanted = chunk_rows if limit is None else min(chunk_rows, limit - progress.rows)
        rows, _tier = tiers.ohlcv_rows(query.exchange, query.symbol, query.timeframe, start, query.end, wanted)
        progress.rows += len(rows)
        yield _candle_table(rows, text)
        if len(rows) < wanted:
            return
        start = EPOCH + timedelta(seconds=rows[-1][0] + TIMEFRAMES[query.timeframe])


class _Export:
    """One file being written: ``first()`` then ``next()`` until None, each on the thread pool.

    The chunks are read one ahead, on a thread of the export's own, while the one before is encoded:
    ClickHouse (or pyiceberg) reading and pyarrow writing Parquet both run without the GIL, so on two
    cores they overlap (Parquet exported ~2.1M rows/s with one after the other, measured)."""

    def __init__(self, fmt: FileFormat, schema: pa.Schema, chunks: Iterator[pa.Table], progress: _Progress,
                 if_empty: Callable[[], None]) -> None:
        self.fmt = fmt
        self.progress = progress
        self._schema = schema
        self._chunks = chunks
        self._if_empty = if_empty
        self._sink = _Sink()
        self._writer: _Writer | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="export-read")
        self._ahead: Future[pa.Table | None] | None = None
        self.stopped = False  # set from the event loop when the response is over: read no further
        self.started = time.monotonic()

    def _read(self) -> pa.Table | None:
        return next(self._chunks, None)

    def first(self) -> bytes:
        """The file's head and first chunk. Raises ApiError for what the client must hear as a status:
        an unknown market (404), a cold tier that cannot be read (503)."""
        try:
            chunk = self._reader.submit(self._read).result()
        except ColdTierUnavailable:
            raise ApiError(503, "part of this range is served from the cold tier (Iceberg), which cannot be "
                                "read right now; retry later, or ask for a range inside ClickHouse's retention",
                           headers={"Retry-After": "5"}) from None
        if chunk is None or chunk.num_rows == 0:
            self._if_empty()
        self._writer = _open_writer(self.fmt, self._schema, self._sink)
        if chunk is not None:
            self._ahead = self._reader.submit(self._read)
            self._writer.write(chunk.cast(self._schema))
        return self._sink.take()

    def next(self) -> bytes | None:
        """The next chunk's bytes; the file's end after the last; None when done."""
        # The previous chunk's Arrow memory goes back to the system, not kept by the allocator for
        # later: 50-70 MB less at the API's peak, at no measurable cost to the rate (measured).
        pa.default_memory_pool().release_unused()
        if self._writer is None:
            return None
        chunk = self._ahead.result() if self._ahead is not None else None
        self._ahead = None
        if chunk is None or self.stopped:
            self._writer.close()
            self._writer = None
            return self._sink.take()
        self._ahead = self._reader.submit(self._read)
        if chunk.num_rows:
            self._writer.write(chunk.cast(self._schema))
        return self._sink.take()

    def close(self) -> None:
        """Once the response is over: the read under way finishes (its query cannot be stopped), no
        other starts."""
        self._reader.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class _ExportResponse(StreamingResponse):
    """Streams an export, releasing its slot however the response ends. A failure after the first byte
    ends the body without its last chunk (see the module docstring)."""

    def __init__(self, export: _Export, first: bytes, admission: ReadAdmission, name: str,
                 headers: dict[str, str]) -> None:
        self._export = export
        self._admission = admission
        self._pending: asyncio.Future[bytes | None] | None = None
        self._name = name
        super().__init__(self._pieces(first), media_type=MEDIA_TYPES[export.fmt], headers=headers)

    async def _pieces(self, first: bytes) -> Any:
        # The next chunk is encoded while this one is sent (and the one after it read, _Export): the
        # threads read and encode, the event loop writes, side by side (three chunks in memory at most).
        piece: bytes | None = first
        while piece is not None:
            self._pending = asyncio.ensure_future(self._admission.run_held(self._export.next))
            # Sent in slices: the server's send buffer then holds a slice, not a copy of the whole chunk.
            view = memoryview(piece)
            for offset in range(0, len(view), SEND_BYTES):
                yield view[offset: offset + SEND_BYTES]
            # (Shielded: a client going away cancels this wait, not the read, which finishes.)
            piece = await asyncio.shield(self._pending)
            self._pending = None

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception as exc:
            # Too late for a status: no final chunk, so the client sees an incomplete transfer.
            log.warning("export %s cut short (%d rows read): %s: %s", self._name, self._export.progress.rows,
                        type(exc).__name__, getattr(exc, "message", None) or exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        log.info("export %s: %d rows in %.1f s", self._name, self._export.progress.rows,
                 time.monotonic() - self._export.started)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A client that went away cancels the stream; the chunk being read is finished first (its
            # thread cannot be stopped, and holds a connection of the export's slot).
            self._export.stopped = True
            try:
                with anyio.CancelScope(shield=True):
                    pending = self._pending
                    if pending is not None:
                        await asyncio.wait({pending})
                        if not pending.cancelled():
                            pending.exception()  # seen: nobody else will look at it
                    await run_in_threadpool(self._export.close)  # (waits for a read under way)
            finally:
                self._admission.release()


# -- the endpoints' side ------------------------------------------------------------------------------
def _file_name(exchange: str, symbol: str, what: str, start: datetime | None, end: datetime | None,
               fmt: FileFormat) -> str:
    def moment(value: datetime | None, default: str) -> str:
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S") + "Z" if value else default

    return (f"{exchange}_{symbol.replace('/', '-')}_{what}_{moment(start, 'first')}_{moment(end, 'latest')}"
            f".{_EXTENSIONS[fmt]}")


@contextlib.contextmanager
def _file_limit(maximum: int) -> Iterator[None]:
    """A bad ``limit`` of a file request, told in a file's terms (the JSON message names a page default)."""
    try:
        yield
    except ApiError as exc:
        if exc.parameter != "limit":
            raise
        raise ApiError(400, f"limit of a file must be an integer from 1 to {maximum}, or left out for the whole "
                            "range", "limit") from None


class Exporter:
    """The file side of ``/v1/trades`` and ``/v1/ohlcv`` (v1.py hands over every non-JSON request)."""

    def __init__(self, reader: WarehouseReader, tiers: TieredReader, admission: ReadAdmission, max_limit: int,
                 cursors: CursorSeal, require_known_market: Callable[[str, str], None]) -> None:
        self.reader = reader
        self.tiers = tiers
        self.admission = admission
        self.max_limit = max_limit
        self.cursors = cursors
        self.require_known_market = require_known_market

    def trades_query(self, request: Request, fmt: FileFormat) -> tuple[TradesQuery, str]:
        """The request checked as a trades file, and the file's name (ApiError when it is not one)."""
        with _file_limit(MAX_FILE_ROWS):
            query = parse_trades(request.query_params, MAX_FILE_ROWS, self.cursors)
        return query, _file_name(query.exchange, query.symbol, "trades", query.start, query.end, fmt)

    def ohlcv_query(self, request: Request, fmt: FileFormat) -> tuple[OhlcvQuery, str]:
        """The request checked as a candles file, and the file's name (ApiError when it is not one)."""
        params = request.query_params
        # Candles with a limit and no start are the newest `limit` (as JSON): those are held at once.
        newest = "start" not in params and "limit" in params
        with _file_limit(self.max_limit if newest else MAX_FILE_ROWS):
            query = parse_ohlcv(params, self.max_limit if newest else MAX_FILE_ROWS)
        return query, _file_name(query.exchange, query.symbol, query.timeframe, query.start, query.end, fmt)

    async def trades(self, request: Request, fmt: FileFormat) -> StreamingResponse:
        query, name = self.trades_query(request, fmt)
        limit = query.limit if "limit" in request.query_params else None
        progress = _Progress()
        text = fmt == "csv"
        chunks = trade_chunks(self.reader, self.tiers, query, limit, text, progress)
        export = _Export(fmt, TRADE_TEXT_SCHEMA if text else TRADE_SCHEMA, chunks, progress,
                         self._if_empty(query.exchange, query.symbol, query.after is None))
        return await self._respond(export, name)

    async def ohlcv(self, request: Request, fmt: FileFormat) -> StreamingResponse:
        query, name = self.ohlcv_query(request, fmt)
        params = request.query_params
        newest = "start" not in params and "limit" in params
        limit = query.limit if "limit" in params else None
        progress = _Progress()
        text = fmt == "csv"
        chunks = candle_chunks(self.tiers, query, limit, newest, text, progress)
        export = _Export(fmt, CANDLE_TEXT_SCHEMA if text else CANDLE_SCHEMA, chunks, progress,
                         self._if_empty(query.exchange, query.symbol, True))
        return await self._respond(export, name)

    def _if_empty(self, exchange: str, symbol: str, check: bool) -> Callable[[], None]:
        # An empty file for a market nobody knows would hide a typo: 404, as the JSON answer.
        return (lambda: self.require_known_market(exchange, symbol)) if check else (lambda: None)

    async def _respond(self, export: _Export, name: str) -> StreamingResponse:
        await self.admission.acquire()
        try:
            first = await self.admission.run_held(export.first)
            headers = {"Content-Disposition": f'attachment; filename="{name}"', TIER_HEADER: export.progress.tier}
            return _ExportResponse(export, first, self.admission, name, headers)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(export.close)
            self.admission.release()
            raise
