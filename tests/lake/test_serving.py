"""The API answers ranges older than warm retention from the cold tier, and ranges straddling the
boundary as one series, exactly as the warm tier alone would (docs/lake.md, "Serving from the cold
tier"). Real embedded ClickHouse holding old trades, offloaded to a real SQLite Iceberg catalog.

The tiered app is compared with a warm-only app over the same warehouse (the warm tier still holds
every row here, so the warm-only answer is the truth): whole bodies, bar the ``tier`` field.
"""

from __future__ import annotations

import csv
import io
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from starlette.applications import Starlette

from tests.conftest import empty_layers
from tests.factories import frame
from ticklake.api import create_app, export
from ticklake.api.cursor import CursorSeal
from ticklake.api.tiers import TIER_HEADER, TierBoundary
from ticklake.client import TicklakeClient
from ticklake.lake.catalog import open_catalog
from ticklake.lake.cold_reader import ColdReader, decimal_texts
from ticklake.lake.offload import offload_bound, offload_table
from ticklake.lake.tables import GOLD_OHLCV, SILVER_TRADES
from ticklake.model import Trade
from ticklake.settings import ApiSettings, LakeSettings, RetentionSettings, Settings, ValidationSettings
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import WarehouseWriter

pytestmark = pytest.mark.integration

NAMESPACE = "ticklake"
LAG_S = 1  # as tests/lake/test_offload.py: no insert is in flight when these tests offload
MAX_LIMIT = 5000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Warm retention of 3 days (1d candles: 5): the boundary B is 00:00 UTC four days ago (six for 1d),
# and the trades below span twelve days, so most of them lie before it.
RETENTION = RetentionSettings(silver_days=3, gold_days=3, gold_1d_days=5)
SERVED_TIMEFRAMES = ("1m", "1h", "1d")
MARKETS = (("binance", "BTC/USDT", "BTCUSDT"), ("kraken", "ETH/USD", "ETH/USD"))

# One installation key for every app here, so that their cursors compare equal.
CURSORS = CursorSeal(b"ticklake-serving-tests-key")


def settings() -> Settings:
    return Settings(retention=RETENTION, api=ApiSettings(max_limit=MAX_LIMIT))


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Lake:
    """Old trades in the warm tier and the same rows offloaded to a cold catalog under ``data_dir``."""

    warehouse: Client
    data_dir: Path
    trades: tuple[Trade, ...]
    now: datetime
    boundary: TierBoundary

    def cold(self, refresh_s: float = 0.0) -> ColdReader:
        return ColdReader.from_settings(LakeSettings(), self.data_dir, refresh_s=refresh_s)

    def tiered_app(self) -> Starlette:
        return create_app(WarehouseReader(self.warehouse), settings(), cold=self.cold(), boundary=self.boundary,
                          cursors=CURSORS)

    def warm_app(self) -> Starlette:
        return create_app(WarehouseReader(self.warehouse), settings(), cursors=CURSORS)


def old_trades(now: datetime) -> list[Trade]:
    """Twelve days of trades on two markets, a few minutes apart, with the awkward cases on the way:
    trades sharing a microsecond (ids out of time order), trades on the boundary's very microsecond
    and just before it, the finest quantity and an 18-decimal price."""
    rng = random.Random(5)
    trades: list[Trade] = []
    boundary_us = micros(TierBoundary.from_retention(RETENTION).trades())
    for exchange, symbol, native in MARKETS:
        base_price = 60_000 if exchange == "binance" else 3_000

        def add(at_us: int, ids: list[int], price: str | None = None, qty: str | None = None, *,
                exchange: str = exchange, symbol: str = symbol, native: str = native,
                base_price: int = base_price) -> None:
            for i in ids:
                text = price or f"{base_price + rng.randint(-900, 900)}.{rng.randint(0, 99):02d}"
                trades.append(Trade(exchange, symbol, native, i, text, qty or f"0.{rng.randint(1, 99_999_999):08d}",
                                    rng.choice(("buy", "sell", "unknown")), at_us, at_us + 3_000))

        ts = micros(now - timedelta(days=12))
        trade_id = 1_000_000 if exchange == "binance" else 7_000
        crossed = False
        while ts < micros(now - timedelta(hours=2)):
            ts += rng.randint(60, 600) * 1_000_000 + rng.randint(0, 999_999)
            if ts > boundary_us and not crossed:
                add(boundary_us - 1, [trade_id + 2, trade_id + 1])  # just before B, ids reversed
                add(boundary_us, [trade_id + 4, trade_id + 3])  # exactly at B
                trade_id += 4
                crossed = True
            trade_id += 1
            if trade_id % 97 == 0:
                add(ts, [trade_id + 2, trade_id + 1, trade_id])  # one microsecond, ids not in time order
                trade_id += 2
            elif trade_id % 89 == 0:
                add(ts, [trade_id], qty="0.000000000000000001")
            elif trade_id % 83 == 0:
                add(ts, [trade_id], price=f"{base_price}.123456789012345678", qty="12345678.9")
            else:
                add(ts, [trade_id])
    return trades


def build_lake(warehouse: Client, data_dir: Path) -> Lake:
    now = datetime.now(UTC)
    trades = old_trades(now)
    empty_layers(warehouse)
    # Exchange time 5 ms before receive time: validation (max_age_days) accepts them; retention counts
    # from when they are stored (now), so the warm tier keeps them all.
    plan = WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", trade_count=len(trades))], trades)
    assert len(plan.silver) == len(trades) and not plan.dead
    newest = int(warehouse.query("SELECT toUInt32(max(stored_at)) FROM silver_trades").first_row[0])
    while offload_bound(warehouse, LAG_S) < newest:
        time.sleep(0.2)
    catalog = open_catalog(LakeSettings(), data_dir)
    for spec in (SILVER_TRADES, *(GOLD_OHLCV[label] for label in SERVED_TIMEFRAMES)):
        assert offload_table(warehouse, catalog, NAMESPACE, spec, safety_lag_s=LAG_S,
                             max_rows_per_commit=1_000).rows > 0
    return Lake(warehouse, data_dir, tuple(trades), now, TierBoundary.from_retention(RETENTION))


@pytest.fixture(scope="module")
def lake(warehouse_session: Client, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Built once for the module (offloading takes seconds); tests here only read it."""
    return build_lake(warehouse_session, tmp_path_factory.mktemp("lake"))


def make_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                             base_url="http://ticklake.test")


@pytest.fixture
async def tiered(lake: Lake) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(lake.tiered_app()) as client:
        yield client


@pytest.fixture
async def warm_only(lake: Lake) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(lake.warm_app()) as client:
        yield client


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def answer(api: httpx.AsyncClient, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """Status, body without ``tier``, and the tier (checked equal in header and body)."""
    response = await api.get(path, params=params)
    body = response.json()
    if response.status_code != 200:
        return response.status_code, body, ""
    tier = body.pop("tier")
    assert response.headers[TIER_HEADER] == tier
    return 200, body, tier


async def same_answer(tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient, path: str,
                      params: dict[str, str]) -> tuple[dict[str, Any], str]:
    status, body, tier = await answer(tiered, path, params)
    warm_status, warm_body, warm_tier = await answer(warm_only, path, params)
    assert (status, body) == (warm_status, warm_body), params
    assert warm_tier in ("warm", "")
    return body, tier


# -- trades -----------------------------------------------------------------------------------------
async def test_a_straddling_trades_query_returns_exactly_the_warm_only_rows(
        lake: Lake, tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient) -> None:
    b = lake.boundary.trades()
    for exchange, symbol, _native in MARKETS:
        market = {"exchange": exchange, "symbol": symbol, "limit": str(MAX_LIMIT)}
        body, tier = await same_answer(tiered, warm_only, "/v1/trades",
                                       {**market, "start": iso(lake.now - timedelta(days=13))})
        assert tier == "warm+cold"
        times = [datetime.fromisoformat(t["time"]) for t in body["trades"]]
        assert times[0] < b <= times[-1]  # both tiers contributed
        expected = sum(1 for t in lake.trades if t.exchange == exchange)
        assert len(body["trades"]) == expected  # every trade once: no duplicate, no gap at B
        assert {t["trade_id"] for t in body["trades"]} == {str(t.trade_id) for t in lake.trades
                                                            if t.exchange == exchange}
        # No start: from the first stored trade; B inside a second; B's exact microsecond as start/end.
        for params in ({}, {"start": iso(b - timedelta(seconds=0.5)), "end": iso(b + timedelta(seconds=0.5))},
                       {"start": iso(b - timedelta(microseconds=1)), "end": iso(b + timedelta(microseconds=1))},
                       {"end": iso(b)}, {"start": iso(b)}):
            await same_answer(tiered, warm_only, "/v1/trades", {**market, **params})


async def test_cursor_pages_cross_the_boundary_like_warm_pages(
        lake: Lake, tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient) -> None:
    b = lake.boundary.trades()
    params = {"exchange": "binance", "symbol": "BTC/USDT", "start": iso(b - timedelta(hours=20)),
              "end": iso(b + timedelta(hours=20)), "limit": "37"}
    tiers, rows = [], 0
    while True:
        body, tier = await same_answer(tiered, warm_only, "/v1/trades", params)
        tiers.append(tier)
        rows += len(body["trades"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    # Pages before B come from cold, the page across it from both, the rest (cursor past B) from warm.
    assert tiers[0] == "cold" and tiers[-1] == "warm" and "warm+cold" in tiers
    assert tiers == sorted(tiers, key=("cold", "warm+cold", "warm").index)
    assert rows == sum(1 for t in lake.trades if t.exchange == "binance"
                       and micros(b - timedelta(hours=20)) <= t.ts_us < micros(b + timedelta(hours=20)))


async def test_a_range_before_the_boundary_is_read_from_cold_only(
        lake: Lake, tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient) -> None:
    b = lake.boundary.trades()
    market = {"exchange": "kraken", "symbol": "ETH/USD"}
    _, tier = await same_answer(tiered, warm_only, "/v1/trades", {**market, "end": iso(b), "limit": "5000"})
    assert tier == "cold"
    _, tier = await same_answer(tiered, warm_only, "/v1/trades", {**market, "start": iso(b), "limit": "10"})
    assert tier == "warm"
    # A market nobody trades: 404 whichever tier the range falls in, as before.
    status, body, _ = await answer(tiered, "/v1/trades", {"exchange": "binance", "symbol": "NOPE/USDT",
                                                          "end": iso(b)})
    assert status == 404 and body["error"]["parameter"] == "symbol"


# -- candles ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("timeframe", SERVED_TIMEFRAMES)
async def test_a_straddling_ohlcv_query_returns_exactly_the_warm_only_candles(
        lake: Lake, tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient, timeframe: str) -> None:
    b = lake.boundary.candles(timeframe)
    step = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}[timeframe]
    long_ago = lake.now - timedelta(days=13)
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"start": iso(long_ago), "limit": str(MAX_LIMIT)}, {"warm+cold", "cold"}),  # everything (1m: cold fills it)
        ({"start": iso(long_ago), "limit": "3"}, {"cold"}),  # the page fills before B
        ({"start": iso(b - 3 * step), "limit": "9"}, {"warm+cold"}),  # a page across B
        ({"start": iso(b - step - timedelta(seconds=29.5)), "end": iso(b + 2 * step)}, {"warm+cold"}),
        ({"limit": str(MAX_LIMIT)}, {"warm+cold", "warm"}),  # the newest, reaching back before B
        ({"end": iso(b + 2 * step), "limit": "5"}, {"warm+cold"}),  # the newest before an end just past B
        ({"end": iso(b), "limit": "4"}, {"cold"}),
        ({"start": iso(long_ago), "end": iso(b)}, {"cold"}),
        ({"start": iso(b), "limit": "6"}, {"warm"}),
    ]
    for exchange, symbol, _native in MARKETS:
        for params, tiers in cases:
            body, tier = await same_answer(tiered, warm_only, "/v1/ohlcv", {
                "exchange": exchange, "symbol": symbol, "timeframe": timeframe, **params})
            assert tier in tiers, (params, tier)
            assert body["candles"], params
            times = [c["time"] for c in body["candles"]]
            assert times == sorted(set(times))  # oldest first, each bucket once


async def test_everything_straddling_has_both_tiers_in_it(lake: Lake, tiered: httpx.AsyncClient) -> None:
    b = iso(lake.boundary.candles("1h"))
    _, body, tier = await answer(tiered, "/v1/ohlcv", {"exchange": "binance", "symbol": "BTC/USDT",
                                                       "timeframe": "1h", "limit": str(MAX_LIMIT)})
    times = [c["time"] for c in body["candles"]]
    assert tier == "warm+cold" and times[0] < b <= times[-1] and len(times) > 12 * 20


async def test_decimals_from_cold_are_written_as_warm_writes_them(
        lake: Lake, tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient) -> None:
    b = lake.boundary.trades()
    params = {"exchange": "binance", "symbol": "BTC/USDT", "end": iso(b), "limit": str(MAX_LIMIT)}
    body, tier = await same_answer(tiered, warm_only, "/v1/trades", params)
    assert tier == "cold"
    quantities = {t["qty"] for t in body["trades"]}
    prices = {t["price"] for t in body["trades"]}
    assert "0.000000000000000001" in quantities and "12345678.9" in quantities
    assert "60000.123456789012345678" in prices
    candles, tier = await same_answer(tiered, warm_only, "/v1/ohlcv", {**params, "timeframe": "1m"})
    assert tier == "cold"
    texts = [c[k] for c in candles["candles"] for k in ("open", "volume", "quote_volume", "vwap")]
    assert not [t for t in texts if "E" in t or (("." in t) and t.endswith("0"))]


def test_decimal_texts_are_shortest_and_never_exponents() -> None:
    values = ["0.000000000000000001", "100", "1E-10", "10.5", "0", "0.000001", "0.00000123",
              "12345678901234567890.123456789012345678", "-2.50"]
    column = pa.array([Decimal(v) for v in values], pa.decimal128(38, 18))
    assert decimal_texts(column) == ["0.000000000000000001", "100", "0.0000000001", "10.5", "0", "0.000001",
                                     "0.00000123", "12345678901234567890.123456789012345678", "-2.5"]


# -- the cold tier missing or failing ---------------------------------------------------------------
async def test_an_unreachable_cold_tier_is_a_503_and_warm_ranges_still_answer(lake: Lake) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    cold = ColdReader.from_settings(LakeSettings(catalog="rest", uri=f"http://127.0.0.1:{port}"), lake.data_dir)
    app = create_app(WarehouseReader(lake.warehouse), settings(), cold=cold, boundary=lake.boundary, cursors=CURSORS)
    b = lake.boundary.trades()
    async with make_client(app) as api:
        for path, extra in (("/v1/trades", {"end": iso(b)}), ("/v1/trades", {}),
                            ("/v1/ohlcv", {"timeframe": "1h", "start": iso(lake.now - timedelta(days=9))})):
            response = await api.get(path, params={"exchange": "binance", "symbol": "BTC/USDT", **extra})
            assert response.status_code == 503, response.text
            assert set(response.json()) == {"error"}
            message = response.json()["error"]["message"]
            assert "cold tier" in message and "retry" in message and f"{b:%Y-%m-%d}" in message
        response = await api.get("/v1/trades", params={"exchange": "binance", "symbol": "BTC/USDT", "start": iso(b)})
        assert response.status_code == 200 and response.headers[TIER_HEADER] == "warm"
        assert response.json()["trades"]
        response = await api.get("/v1/ohlcv", params={"exchange": "binance", "symbol": "BTC/USDT"})
        assert response.status_code == 200 and response.headers[TIER_HEADER] == "warm"  # the newest 500: warm
        # Bad parameters stay 400s, before any tier is asked.
        response = await api.get("/v1/ohlcv", params={"exchange": "binance", "symbol": "BTC/USDT", "limit": "0"})
        assert response.status_code == 400 and response.json()["error"]["parameter"] == "limit"


# -- the Python client ------------------------------------------------------------------------------
@pytest.fixture
def served(lake: Lake) -> Iterator[tuple[str, str]]:
    """The tiered and the warm-only app on real uvicorn servers (the client is synchronous)."""
    servers, urls = [], []
    for app in (lake.tiered_app(), lake.warm_app()):
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
        servers.append((server, thread, sock))
        urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        yield urls[0], urls[1]
    finally:
        for server, thread, sock in servers:
            server.should_exit = True
            thread.join(5)
            sock.close()


def test_client_frames_are_the_same_and_carry_the_tier(lake: Lake, served: tuple[str, str]) -> None:
    tiered_url, warm_url = served
    b = lake.boundary.trades()
    with TicklakeClient(tiered_url) as tiered, TicklakeClient(warm_url) as warm:
        start, end = b - timedelta(hours=10), b + timedelta(hours=10)
        frame_tiered = tiered.trades("binance", "BTC/USDT", start, end, limit=50)
        frame_warm = warm.trades("binance", "BTC/USDT", start, end, limit=50)
        pd.testing.assert_frame_equal(frame_tiered, frame_warm)
        assert len(frame_tiered) > 100
        assert frame_tiered.attrs["tier"] == "warm+cold" and frame_warm.attrs["tier"] == "warm"
        assert tiered.trades("binance", "BTC/USDT", end=b, max_rows=10).attrs["tier"] == "cold"

        candles_tiered = tiered.ohlcv("binance", "BTC/USDT", "1h", start=start, limit=5000)
        candles_warm = warm.ohlcv("binance", "BTC/USDT", "1h", start=start, limit=5000)
        pd.testing.assert_frame_equal(candles_tiered, candles_warm)
        assert candles_tiered.attrs["tier"] == "warm+cold" and candles_warm.attrs["tier"] == "warm"


# -- file exports (api/export.py) -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_files_across_the_boundary_hold_the_warm_only_rows(
        lake: Lake, tiered: httpx.AsyncClient, warm_only: httpx.AsyncClient, fmt: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "TRADE_CHUNK_ROWS", 300)  # many chunks, in both pieces
    monkeypatch.setattr(export, "CANDLE_CHUNK_ROWS", 40)

    def rows(response: httpx.Response) -> list[dict[str, Any]]:
        assert response.status_code == 200, response.text
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(response.text)))
        table = pq.read_table(io.BytesIO(response.content))
        assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
        result: list[dict[str, Any]] = table.to_pylist()
        return result

    long_ago = iso(lake.now - timedelta(days=13))
    for exchange, symbol, _native in MARKETS:
        market = {"exchange": exchange, "symbol": symbol, "format": fmt}
        cold_and_warm = await tiered.get("/v1/trades", params={**market, "start": long_ago})
        warm = await warm_only.get("/v1/trades", params={**market, "start": long_ago})
        assert cold_and_warm.headers[TIER_HEADER] == "warm+cold" and warm.headers[TIER_HEADER] == "warm"
        assert rows(cold_and_warm) == rows(warm)
        expected = (await warm_only.get("/v1/trades", params={"exchange": exchange, "symbol": symbol,
                                                               "start": long_ago, "limit": MAX_LIMIT})).json()
        assert len(rows(cold_and_warm)) == len(expected["trades"]) == sum(1 for t in lake.trades
                                                                         if t.exchange == exchange)
        if fmt == "csv":  # the JSON answer's very text, the cold rows' included
            assert rows(cold_and_warm) == expected["trades"]
        # A cursor before the boundary: the file continues from it, through both tiers.
        page = (await tiered.get("/v1/trades", params={"exchange": exchange, "symbol": symbol, "limit": 700})).json()
        rest = await tiered.get("/v1/trades", params={**market, "cursor": page["next_cursor"], "limit": 2000})
        assert rows(rest) == rows(warm)[700:2700]
        # Before B alone: cold; candles across B: the same candles as warm-only.
        b = lake.boundary.trades()
        assert (await tiered.get("/v1/trades", params={**market, "end": iso(b)})).headers[TIER_HEADER] == "cold"
        candles = {**market, "timeframe": "1h", "start": long_ago}
        cold_candles = await tiered.get("/v1/ohlcv", params=candles)
        assert cold_candles.headers[TIER_HEADER] == "warm+cold"
        assert rows(cold_candles) == rows(await warm_only.get("/v1/ohlcv", params=candles))


def test_client_frames_from_files_across_the_boundary(lake: Lake, served: tuple[str, str]) -> None:
    tiered_url, warm_url = served
    b = lake.boundary.trades()
    with TicklakeClient(tiered_url) as tiered, TicklakeClient(warm_url) as warm:
        start, end = b - timedelta(hours=30), b + timedelta(hours=30)
        for fmt in ("parquet", "arrow"):
            from_file = tiered.trades("binance", "BTC/USDT", start, end, format=fmt)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(from_file, warm.trades("binance", "BTC/USDT", start, end))
            assert from_file.attrs["tier"] == "warm+cold" and len(from_file) > 100
            candles = tiered.ohlcv("binance", "BTC/USDT", "1h", start, end, format=fmt)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(candles, warm.ohlcv("binance", "BTC/USDT", "1h", start, end, 5000))


# -- tests with a warehouse of their own (the `warehouse` fixture empties it: these come last) ----------
async def test_old_ranges_come_from_cold_after_the_warm_rows_expired(warehouse: Client, tmp_path: Path) -> None:
    lake = build_lake(warehouse, tmp_path)
    b_trades, b_candles = lake.boundary.trades(), lake.boundary.candles("1m")
    queries = [("/v1/trades", {"exchange": "binance", "symbol": "BTC/USDT", "end": iso(b_trades), "limit": "5000"}),
               ("/v1/trades", {"exchange": "kraken", "symbol": "ETH/USD", "start": iso(lake.now - timedelta(days=9)),
                               "end": iso(b_trades), "limit": "100"})]
    for timeframe in ("1m", "1h"):
        queries.append(("/v1/ohlcv", {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": timeframe,
                                      "end": iso(lake.boundary.candles(timeframe)), "limit": "5000"}))
        queries.append(("/v1/ohlcv", {"exchange": "kraken", "symbol": "ETH/USD", "timeframe": timeframe,
                                      "start": iso(lake.now - timedelta(days=11)),
                                      "end": iso(lake.boundary.candles(timeframe)), "limit": "40"}))
    async with make_client(lake.warm_app()) as warm_only:
        before = [await answer(warm_only, path, params) for path, params in queries]
    assert all(status == 200 and tier == "warm" for status, _body, tier in before)

    # What TTL does once the rows are older than retention (counted from stored_at / updated_at).
    warehouse.command("ALTER TABLE silver_trades DELETE WHERE ts < {b:DateTime64(6, 'UTC')} "
                      "SETTINGS mutations_sync = 2", parameters={"b": b_trades})
    warehouse.command("ALTER TABLE gold_ohlcv DELETE WHERE bucket < {b:DateTime('UTC')} AND timeframe != 86400 "
                      "SETTINGS mutations_sync = 2", parameters={"b": b_candles})

    async with make_client(lake.tiered_app()) as tiered, make_client(lake.warm_app()) as warm_only:
        for (path, params), (_status, expected, _tier) in zip(queries, before, strict=True):
            status, body, tier = await answer(tiered, path, params)
            assert (status, body, tier) == (200, expected, "cold"), params
            _, gone, _ = await answer(warm_only, path, params)  # the warm tier no longer has them
            assert not gone.get("trades", gone.get("candles"))

    # The cold files lost (an object store emptied, a wrong bucket): cold ranges are a 503, not a
    # crash and not an empty answer; warm ranges are still served.
    for data_file in (tmp_path / "lake" / "warehouse").rglob("*.parquet"):
        data_file.unlink()
    async with make_client(lake.tiered_app()) as tiered:
        for path, params in queries:
            response = await tiered.get(path, params=params)
            assert response.status_code == 503 and "cold tier" in response.json()["error"]["message"]
        response = await tiered.get("/v1/trades", params={"exchange": "binance", "symbol": "BTC/USDT",
                                                          "start": iso(b_trades)})
        assert response.status_code == 200 and response.json()["trades"]


async def test_without_any_offload_the_warm_tier_serves_everything(warehouse: Client, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    trades = old_trades(now)[:500]
    WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", trade_count=len(trades))], trades)
    cold = ColdReader.from_settings(LakeSettings(), tmp_path)  # a lake never written to
    app = create_app(WarehouseReader(warehouse), settings(), cold=cold, cursors=CURSORS)
    async with make_client(app) as api:
        response = await api.get("/v1/trades", params={"exchange": "binance", "symbol": "BTC/USDT", "limit": "5000"})
        assert response.status_code == 200 and response.json()["tier"] == "warm"
        assert len(response.json()["trades"]) == sum(1 for t in trades if t.exchange == "binance")
        response = await api.get("/v1/ohlcv", params={"exchange": "binance", "symbol": "BTC/USDT",
                                                      "start": iso(now - timedelta(days=13))})
        assert response.status_code == 200 and response.headers[TIER_HEADER] == "warm"
    assert not (tmp_path / "lake").exists()  # reading created no catalog


def test_new_offloads_are_seen_within_the_refresh_interval(warehouse: Client, tmp_path: Path) -> None:
    lake = build_lake(warehouse, tmp_path)
    b = lake.boundary.trades()
    fresh, cached = lake.cold(refresh_s=0.0), lake.cold(refresh_s=3600.0)
    before = len(cached.trades("binance", "BTC/USDT", None, b, 5000))
    late = [Trade("binance", "BTC/USDT", "BTCUSDT", 99_000_000 + i, "1.5", "2", "buy",
                  micros(b - timedelta(days=2)) + i, micros(b - timedelta(days=2)) + 5_000) for i in range(3)]
    WarehouseWriter(warehouse, ValidationSettings(max_age_days=1)).write([frame("{}", trade_count=3)], late)
    newest = int(warehouse.query("SELECT toUInt32(max(stored_at)) FROM silver_trades").first_row[0])
    while offload_bound(warehouse, LAG_S) < newest:
        time.sleep(0.2)
    catalog: Catalog = open_catalog(LakeSettings(), tmp_path)
    assert offload_table(warehouse, catalog, NAMESPACE, SILVER_TRADES, safety_lag_s=LAG_S,
                         max_rows_per_commit=1_000).rows == 3
    assert len(fresh.trades("binance", "BTC/USDT", None, b, 5000)) == before + 3
    # The new file overlaps older ones in time: a page from there still comes complete and in order.
    around = micros(b - timedelta(days=2))
    expected = sorted((t.ts_us, t.trade_id) for t in (*lake.trades, *late)
                      if t.exchange == "binance" and t.ts_us >= around)[:7]
    page = fresh.trades("binance", "BTC/USDT", b - timedelta(days=2), b, 7)
    assert [(t.ts_us, t.trade_id) for t in page] == expected
    assert [t.trade_id for t in page[:3]] == [t.trade_id for t in late]
    assert len(cached.trades("binance", "BTC/USDT", None, b, 5000)) == before  # until its metadata is reloaded
