"""File exports of /v1/trades and /v1/ohlcv (api/export.py): CSV, Parquet and Arrow hold the JSON
answer row for row, chosen by ``format`` or the Accept header, streamed chunk by chunk over a real
server, under an export slot of their own; and the Python client's frames from files equal its JSON
frames. (Ranges across the warm and cold tiers: tests/lake/test_serving.py.)"""

from __future__ import annotations

import csv
import io
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from tests.api.api_data import CONFIGURED, CURSORS, Dataset, assert_error
from ticklake.api import create_app, export
from ticklake.client import TicklakeClient
from ticklake.settings import ApiSettings, Settings
from ticklake.warehouse.reader import WarehouseReader

pytestmark = pytest.mark.integration

MARKETS = (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD"))
BTC = {"exchange": "binance", "symbol": "BTC/USDT"}
DECIMAL_TYPE = pa.decimal128(38, 18)
MICROS = pa.timestamp("us", tz="UTC")


def read_file(fmt: str, body: bytes) -> list[dict[str, Any]]:
    """A file's rows as dicts: CSV as its text, Parquet and Arrow as Python values."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body.decode())))
    rows: list[dict[str, Any]] = table_of(fmt, body).to_pylist()
    return rows


def table_of(fmt: str, body: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(body)) if fmt == "parquet" else pa.ipc.open_stream(body).read_all()


def as_json(fmt: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """File rows written as the JSON answer writes them (CSV rows already are, but for numbers)."""
    if fmt == "csv":
        return [{k: (int(v) if k == "trades" else v) for k, v in row.items()} for row in rows]

    def text(key: str, value: Any) -> Any:
        if isinstance(value, Decimal):
            plain = format(value, "f")
            return plain.rstrip("0").rstrip(".") if "." in plain else plain
        if isinstance(value, datetime):
            return value.isoformat(timespec="seconds" if key == "time" and "trades" in rows[0] else "microseconds"
                                   ).replace("+00:00", "Z")
        return str(value) if key == "trade_id" else value

    return [{k: text(k, v) for k, v in row.items()} for row in rows]


async def json_answer(api: httpx.AsyncClient, path: str, params: dict[str, Any], key: str) -> list[dict[str, Any]]:
    response = await api.get(path, params={**params, "limit": 5000})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()[key]
    return rows


# -- what a file holds --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet", "arrow"])
async def test_trade_files_hold_the_json_answer_row_for_row(api: httpx.AsyncClient, loaded: Dataset,
                                                            fmt: str) -> None:
    for exchange, symbol in MARKETS:
        params = {"exchange": exchange, "symbol": symbol}
        expected = await json_answer(api, "/v1/trades", params, "trades")
        assert expected == loaded.trade_records(exchange, symbol)
        response = await api.get("/v1/trades", params={**params, "format": fmt})
        assert response.status_code == 200, response.text
        media_type = export.MEDIA_TYPES[fmt]  # type: ignore[index]
        assert response.headers["content-type"].startswith(media_type.split(";")[0])
        assert response.headers["x-ticklake-tier"] == "warm"
        rows = read_file(fmt, response.content)
        assert as_json(fmt, rows) == expected  # the same text: exact decimals, microsecond times, ids to 2^64
        if fmt != "csv":
            schema = table_of(fmt, response.content).schema
            assert [(f.name, f.type) for f in schema] == [
                ("trade_id", pa.uint64()), ("time", MICROS), ("price", DECIMAL_TYPE), ("qty", DECIMAL_TYPE),
                ("side", pa.string()), ("received_at", MICROS)]


async def test_a_csv_file_is_plain_text_with_a_header(api: httpx.AsyncClient, loaded: Dataset) -> None:
    response = await api.get("/v1/trades", params={**BTC, "format": "csv"})
    lines = response.text.splitlines()
    first = loaded.trade_records("binance", "BTC/USDT")[0]
    assert lines[0] == "trade_id,time,price,qty,side,received_at"
    assert lines[1] == ",".join(first.values())
    assert len(lines) == 1 + len(loaded.market("binance", "BTC/USDT"))
    assert "64000.123456789012345678,0.000000000000000001" in response.text
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="binance_BTC-USDT_trades_first_latest.csv"'


@pytest.mark.parametrize("fmt", ["csv", "parquet", "arrow"])
@pytest.mark.parametrize("timeframe", ["1m", "1h", "1d"])
async def test_candle_files_hold_the_json_answer_row_for_row(api: httpx.AsyncClient, loaded: Dataset, fmt: str,
                                                             timeframe: str) -> None:
    for exchange, symbol in MARKETS:
        params = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        expected = loaded.candles(exchange, symbol, timeframe)
        assert await json_answer(api, "/v1/ohlcv", {**params, "start": "2000-01-01"}, "candles") == expected
        # No start and no limit: every candle, from the first stored (JSON would give the newest 500).
        response = await api.get("/v1/ohlcv", params={**params, "format": fmt})
        assert response.status_code == 200, response.text
        rows = read_file(fmt, response.content)
        assert as_json(fmt, rows) == expected
        if fmt != "csv":
            schema = table_of(fmt, response.content).schema
            assert schema.field("time").type == MICROS and schema.field("open").type == DECIMAL_TYPE
            assert schema.field("quote_volume").type == pa.decimal256(76, 36)
            assert schema.field("trades").type == pa.int64()


@pytest.mark.parametrize("chunk_rows", [5, 64])
async def test_chunks_of_any_size_make_the_same_file(api: httpx.AsyncClient, loaded: Dataset, chunk_rows: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries fall inside groups of trades sharing a microsecond, and the time windows of the
    warm chunks (export.trade_chunks) meet gaps of every length: no row lost or repeated."""
    monkeypatch.setattr(export, "TRADE_CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(export, "CANDLE_CHUNK_ROWS", chunk_rows)
    for exchange, symbol in MARKETS:
        params = {"exchange": exchange, "symbol": symbol}
        for fmt in ("csv", "arrow"):
            trades = await api.get("/v1/trades", params={**params, "format": fmt})
            assert as_json(fmt, read_file(fmt, trades.content)) == loaded.trade_records(exchange, symbol)
        candles = await api.get("/v1/ohlcv", params={**params, "timeframe": "5m", "format": "csv"})
        assert as_json("csv", read_file("csv", candles.content)) == loaded.candles(exchange, symbol, "5m")


async def test_ranges_limits_and_cursors_apply_to_files(api: httpx.AsyncClient, loaded: Dataset) -> None:
    trades = loaded.trade_records("binance", "BTC/USDT")
    start, end = trades[100]["time"], trades[400]["time"]
    window = {**BTC, "start": start, "end": end}
    expected = await json_answer(api, "/v1/trades", window, "trades")
    assert expected == trades[100:400]
    assert as_json("csv", read_file("csv", (await api.get("/v1/trades", params={**window, "format": "csv"})).content)
                   ) == expected
    capped = await api.get("/v1/trades", params={**window, "format": "csv", "limit": 17})
    assert as_json("csv", read_file("csv", capped.content)) == expected[:17]
    assert 'filename="binance_BTC-USDT_trades_' in capped.headers["content-disposition"]
    # A file may hold more rows than a page: its limit is not capped at api.max_limit.
    many = await api.get("/v1/trades", params={**BTC, "format": "csv", "limit": 10**9})
    assert len(read_file("csv", many.content)) == len(trades)
    # The cursor of a JSON page: the file continues after it.
    page = (await api.get("/v1/trades", params={**BTC, "limit": 250})).json()
    rest = await api.get("/v1/trades", params={**BTC, "format": "csv", "cursor": page["next_cursor"]})
    assert as_json("csv", read_file("csv", rest.content)) == trades[250:]
    # Candles with a limit and no start: the newest `limit`, as JSON.
    newest = await json_answer(api, "/v1/ohlcv", {**BTC, "timeframe": "1m"}, "candles")
    file = await api.get("/v1/ohlcv", params={**BTC, "timeframe": "1m", "limit": 5000, "format": "csv"})
    assert as_json("csv", read_file("csv", file.content)) == newest
    five = await api.get("/v1/ohlcv", params={**BTC, "timeframe": "1h", "limit": 5, "start": start, "format": "csv"})
    assert as_json("csv", read_file("csv", five.content)) == (
        await api.get("/v1/ohlcv", params={**BTC, "timeframe": "1h", "limit": 5, "start": start})).json()["candles"]


async def test_an_empty_range_is_a_file_with_no_rows(api: httpx.AsyncClient, loaded: Dataset) -> None:
    params = {"exchange": "coinbase", "symbol": "SOL/USD"}  # configured, never traded
    assert (await api.get("/v1/trades", params={**params, "format": "csv"})).text == \
        "trade_id,time,price,qty,side,received_at\n"
    for fmt in ("parquet", "arrow"):
        response = await api.get("/v1/ohlcv", params={**params, "format": fmt})
        assert response.status_code == 200 and table_of(fmt, response.content).num_rows == 0


# -- choosing the format ----------------------------------------------------------------------------
@pytest.mark.parametrize(("accept", "expected"), [
    ("text/csv", "text/csv"),
    ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
    ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.stream"),
    ("application/json", "application/json"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),  # a browser
    ("application/json;q=0.5, text/csv", "text/csv"),
    ("text/csv;q=0.2, application/vnd.apache.parquet;q=0.9", "application/vnd.apache.parquet"),
    ("text/csv;q=0, application/json", "application/json"),
    ("", "application/json"),
])
async def test_the_accept_header_chooses_the_format(api: httpx.AsyncClient, loaded: Dataset, accept: str,
                                                    expected: str) -> None:
    response = await api.get("/v1/trades", params=BTC, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == expected


async def test_the_format_parameter_wins_over_accept(api: httpx.AsyncClient, loaded: Dataset) -> None:
    response = await api.get("/v1/ohlcv", params={**BTC, "format": "json"}, headers={"Accept": "text/csv"})
    assert response.headers["content-type"] == "application/json" and response.json()["candles"]
    response = await api.get("/v1/ohlcv", params={**BTC, "format": "CSV"}, headers={"Accept": "application/json"})
    assert response.headers["content-type"].startswith("text/csv")


@pytest.mark.parametrize("path", ["/v1/trades", "/v1/ohlcv"])
async def test_a_bad_format_is_a_400_naming_the_accepted_ones(api: httpx.AsyncClient, path: str) -> None:
    message = assert_error(await api.get(path, params={**BTC, "format": "xlsx"}), 400, "format")
    assert "xlsx" in message and "csv" in message and "parquet" in message and "arrow" in message
    assert_error(await api.get(path, params={**BTC, "format": ["csv", "csv"]}), 400, "format")
    # Parameter mistakes of a file request are the same 400s as JSON's, before any byte of a file.
    assert_error(await api.get(path, params={**BTC, "format": "csv", "limit": "0"}), 400, "limit")
    assert_error(await api.get(path, params={"exchange": "binance", "format": "parquet"}), 400, "symbol")


async def test_an_unknown_market_is_a_404_not_an_empty_file(api: httpx.AsyncClient) -> None:
    for path in ("/v1/trades", "/v1/ohlcv"):
        response = await api.get(path, params={"exchange": "binance", "symbol": "NOPE/USDT", "format": "csv"})
        assert_error(response, 404, "symbol")


# -- streaming over a real server -------------------------------------------------------------------
def serve(app: Starlette) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        thread.join(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 50 trades (3 candles): the dataset's 700 trades of a market take many of them."""
    monkeypatch.setattr(export, "TRADE_CHUNK_ROWS", 50)
    monkeypatch.setattr(export, "CANDLE_CHUNK_ROWS", 3)


@pytest.fixture
def served(warehouse: Client, small_chunks: None) -> Iterator[str]:
    """The app on a real uvicorn server; one export slot, one read slot that waits 200 ms."""
    settings = Settings(api=ApiSettings(max_limit=5000, max_concurrent_exports=1, max_concurrent_reads=1,
                                        read_wait_ms=200))
    yield from serve(create_app(WarehouseReader(warehouse), settings, configured_markets=CONFIGURED, cursors=CURSORS))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "arrow"])
def test_files_stream_chunk_by_chunk_over_http(served: str, loaded: Dataset, fmt: str) -> None:
    with httpx.Client(base_url=served) as http:
        expected = http.get("/v1/trades", params={**BTC, "limit": 5000}).json()["trades"]
        with http.stream("GET", "/v1/trades", params={**BTC, "format": fmt}) as response:
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
            pieces = list(response.iter_raw())
        assert len(pieces) >= len(expected) // 50  # one piece at least per chunk, sent as it was read
        assert as_json(fmt, read_file(fmt, b"".join(pieces))) == expected
        candles = http.get("/v1/ohlcv", params={**BTC, "timeframe": "1h", "format": fmt})
        assert as_json(fmt, read_file(fmt, candles.content)) == loaded.candles("binance", "BTC/USDT", "1h")


def test_an_export_holds_its_own_slot_not_a_read_slot(served: str, loaded: Dataset,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    original = WarehouseReader.trades_arrow
    go_on = threading.Event()
    reads: list[int] = []

    def slow(self: WarehouseReader, *args: Any, **kwargs: Any) -> pa.Table:
        reads.append(1)
        if len(reads) == 2:  # the export's second chunk waits, as a long export's would
            go_on.wait(10)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WarehouseReader, "trades_arrow", slow)
    with httpx.Client(base_url=served) as http, httpx.Client(base_url=served) as other:
        with http.stream("GET", "/v1/trades", params={**BTC, "format": "csv"}) as response:
            assert response.status_code == 200
            next(response.iter_raw())  # the export is under way
            # Readers are served meanwhile; a second export finds the one export slot taken.
            assert other.get("/v1/ohlcv", params=BTC).status_code == 200
            assert other.get("/v1/trades", params=BTC).status_code == 200
            busy = other.get("/v1/trades", params={**BTC, "format": "parquet"})
            assert_error(busy, 503, None)
            assert "export" in busy.json()["error"]["message"] and busy.headers["retry-after"] == "1"
        # The client went away mid-file: the export stops after the chunk being read, and gives its
        # slot back.
        go_on.set()
        threading.Event().wait(0.5)
        assert len(reads) == 2  # the chunk it was reading, and no more
        for _ in range(50):
            again = other.get("/v1/trades", params={**BTC, "format": "parquet"})
            if again.status_code == 200:
                break
            threading.Event().wait(0.1)
        assert again.status_code == 200 and table_of("parquet", again.content).num_rows == len(
            loaded.market("binance", "BTC/USDT"))


def test_a_failure_mid_file_is_an_incomplete_transfer(served: str, loaded: Dataset,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    original = WarehouseReader.trades_arrow
    calls = []

    def failing(self: WarehouseReader, *args: Any, **kwargs: Any) -> pa.Table:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the warehouse went away")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WarehouseReader, "trades_arrow", failing)
    with httpx.Client(base_url=served) as http:
        with pytest.raises(httpx.RemoteProtocolError), \
                http.stream("GET", "/v1/trades", params={**BTC, "format": "csv"}) as response:
            assert response.status_code == 200  # the status was sent with the first chunk
            b"".join(response.iter_raw())
        # The slot was given back.
        assert http.get("/v1/trades", params={**BTC, "format": "arrow"}).status_code == 200


def test_head_answers_a_gets_headers_without_reading_any_data(served: str, loaded: Dataset,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    for method in ("trades_arrow", "trades_json", "trades", "ohlcv_rows"):
        original = getattr(WarehouseReader, method)

        def counted(self: WarehouseReader, *args: Any, _original: Any = original, _name: str = method,
                    **kwargs: Any) -> Any:
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(WarehouseReader, method, counted)
    with httpx.Client(base_url=served) as http:
        response = http.head("/v1/trades", params={**BTC, "format": "parquet"})
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-type"] == "application/vnd.apache.parquet"
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        response = http.head("/v1/ohlcv", params={**BTC, "timeframe": "1m", "limit": "5000"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert http.head("/v1/trades", params={**BTC, "format": "csv", "limit": "5000"}).status_code == 200
        assert reads == []  # (the probe found HEAD /v1/ohlcv running the whole query)
        # A GET's refusals: an unknown market, a bad parameter.
        assert http.head("/v1/trades", params={"exchange": "binance", "symbol": "NOPE/USDT",
                                               "format": "csv"}).status_code == 404
        assert http.head("/v1/ohlcv", params={**BTC, "timeframe": "2m"}).status_code == 400
        assert http.get("/v1/trades", params={**BTC, "format": "csv"}).status_code == 200  # the slot is free
        assert reads


# -- the Python client ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
@pytest.mark.parametrize("as_float", [False, True])
def test_client_frames_from_files_equal_json_frames(served: str, loaded: Dataset, fmt: str, as_float: bool) -> None:
    with TicklakeClient(served) as client:
        for exchange, symbol in MARKETS:
            from_json = client.trades(exchange, symbol, as_float=as_float)
            from_file = client.trades(exchange, symbol, as_float=as_float, format=fmt)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(from_file, from_json)
            assert from_file.attrs["tier"] == "warm" and len(from_file) == len(loaded.market(exchange, symbol))
            if not as_float:  # the very same Decimal objects, not merely equal ones
                assert [str(p) for p in from_file["price"]] == [str(p) for p in from_json["price"]]
        some = client.trades("binance", "BTC/USDT", max_rows=123, as_float=as_float, format=fmt)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(some, client.trades("binance", "BTC/USDT", max_rows=123, as_float=as_float))
        start = datetime.fromisoformat(loaded.trade_records("binance", "BTC/USDT")[0]["time"]) - timedelta(hours=1)
        for timeframe in ("1m", "1h"):
            candles_json = client.ohlcv("binance", "BTC/USDT", timeframe, start=start, limit=5000, as_float=as_float)
            candles_file = client.ohlcv("binance", "BTC/USDT", timeframe, start=start, as_float=as_float,
                                        format=fmt)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(candles_file, candles_json)
            if not as_float:
                assert [str(v) for v in candles_file["vwap"]] == [str(v) for v in candles_json["vwap"]]
