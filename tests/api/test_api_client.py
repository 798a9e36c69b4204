"""ticklake.client against the app served by a real uvicorn on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client

from tests.api.api_data import CONFIGURED, Dataset, api_settings, iso_micros
from ticklake.api import create_app
from ticklake.client import TicklakeAPIError, TicklakeClient
from ticklake.warehouse.reader import WarehouseReader

DECIMAL_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "buy_volume", "vwap"]


@pytest.fixture(scope="module")
def server_url(warehouse_session: Client) -> Iterator[str]:
    """One server for the module; each test still loads its data into an emptied warehouse."""
    app = create_app(WarehouseReader(warehouse_session), api_settings(), configured_markets=CONFIGURED)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        thread.join(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@pytest.fixture
def client(server_url: str) -> Iterator[TicklakeClient]:
    with TicklakeClient(server_url, timeout=10) as api:
        yield api


def test_ohlcv_frame_is_exact(client: TicklakeClient, loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "1h")
    frame = client.ohlcv("binance", "BTC/USDT", "1h", limit=5000)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "time"
    assert list(frame.index) == [pd.Timestamp(c["time"]) for c in expected]
    assert list(frame.columns) == [*DECIMAL_COLUMNS, "trades"]
    assert all(frame[c].dtype == object for c in DECIMAL_COLUMNS)
    assert frame["trades"].dtype == "int64"
    assert frame.attrs["tier"] == "warm"
    for (_, row), candle in zip(frame.iterrows(), expected, strict=True):
        for column in DECIMAL_COLUMNS:
            assert isinstance(row[column], Decimal)
            assert row[column] == Decimal(candle[column]), column
        assert row["trades"] == candle["trades"]
    # The finest quantities survive: the last candle holds a 1e-18 trade and a 1e-18 price.
    assert frame["low"].iloc[-1] == Decimal("0.000000000000000001")


def test_ohlcv_as_float(client: TicklakeClient, loaded: Dataset) -> None:
    expected = loaded.candles("binance", "ETH/USDT", "5m")
    frame = client.ohlcv("binance", "ETH/USDT", "5m", as_float=True)
    assert all(frame[c].dtype == "float64" for c in DECIMAL_COLUMNS)
    assert frame["close"].tolist() == [float(c["close"]) for c in expected]


def test_ohlcv_window_arguments(client: TicklakeClient, loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "1m")
    start = datetime.fromisoformat(expected[10]["time"])
    end = datetime.fromisoformat(expected[20]["time"])
    as_datetimes = client.ohlcv("binance", "BTC/USDT", start=start, end=end)
    as_naive = client.ohlcv("binance", "BTC/USDT", start=start.replace(tzinfo=None), end=end.replace(tzinfo=None))
    as_millis = client.ohlcv("binance", "BTC/USDT", start=int(start.timestamp() * 1000), end=expected[20]["time"])
    as_timestamps = client.ohlcv("binance", "BTC/USDT", start=pd.Timestamp(start), end=pd.Timestamp(end))
    assert [c["time"] for c in expected[10:20]] == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in as_datetimes.index]
    for frame in (as_naive, as_millis, as_timestamps):
        pd.testing.assert_frame_equal(frame, as_datetimes)


def test_empty_ohlcv_frame_keeps_its_shape(client: TicklakeClient, loaded: Dataset) -> None:
    frame = client.ohlcv("coinbase", "SOL/USD")
    assert frame.empty and list(frame.columns) == [*DECIMAL_COLUMNS, "trades"]
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"


def test_trades_follow_cursors_across_pages(client: TicklakeClient, loaded: Dataset) -> None:
    expected = loaded.market("binance", "BTC/USDT")
    frame = client.trades("binance", "BTC/USDT", limit=97)
    assert list(frame.columns) == ["time", "trade_id", "price", "qty", "side", "received_at"]
    assert frame.attrs["tier"] == "warm"
    assert frame["trade_id"].dtype == "uint64"
    assert str(frame["time"].dtype).startswith("datetime64") and str(frame["time"].dt.tz) == "UTC"
    assert frame["trade_id"].tolist() == [t.trade_id for t in expected]
    assert frame["price"].tolist() == [Decimal(t.price) for t in expected]
    assert all(isinstance(p, Decimal) for p in frame["qty"])
    assert frame["qty"].tolist() == [Decimal(t.qty) for t in expected]
    assert frame["side"].tolist() == [t.side for t in expected]
    assert [iso_micros(t.ts_us) for t in expected] == [
        t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in frame["time"]]
    assert frame["received_at"].iloc[0] == pd.Timestamp(iso_micros(expected[0].received_us))


@pytest.mark.parametrize(("limit", "max_rows"), [(100, 250), (None, 250), (7, 7), (1000, 5)])
def test_trades_stop_at_max_rows(client: TicklakeClient, loaded: Dataset, limit: int | None,
                                 max_rows: int) -> None:
    expected = loaded.market("binance", "BTC/USDT")[:max_rows]
    frame = client.trades("binance", "BTC/USDT", limit=limit, max_rows=max_rows)
    assert frame["trade_id"].tolist() == [t.trade_id for t in expected]


def test_trades_window_and_float(client: TicklakeClient, loaded: Dataset) -> None:
    trades = loaded.market("kraken", "BTC/USD")
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=trades[5].ts_us)
    end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=trades[12].ts_us)
    frame = client.trades("kraken", "BTC/USD", start=start, end=end, limit=3, as_float=True)
    assert frame["trade_id"].tolist() == [t.trade_id for t in trades[5:12]]  # ids near 2^64, exact
    assert frame["price"].dtype == "float64"


def test_symbols_and_health(client: TicklakeClient, loaded: Dataset) -> None:
    symbols = client.symbols()
    assert list(zip(symbols["exchange"], symbols["symbol"], strict=True)) == [
        ("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("coinbase", "SOL/USD"), ("kraken", "BTC/USD")]
    assert isinstance(symbols["first_day"].iloc[0], date)
    assert symbols["first_day"].iloc[2] is None and symbols["trades"].iloc[2] == 0
    assert symbols["trades"].iloc[1] == len(loaded.market("binance", "ETH/USDT"))
    assert set(symbols["completeness"]) == {"id-sequenced"}
    health = client.health()
    assert health["status"] == "ok" and health["components"]["warehouse"]["status"] == "ok"


def test_api_errors_raise(client: TicklakeClient, loaded: Dataset) -> None:
    with pytest.raises(TicklakeAPIError) as unknown:
        client.ohlcv("binance", "FOO/BAR")
    assert (unknown.value.status, unknown.value.parameter) == (404, "symbol")
    assert unknown.value.message == "no data for binance FOO/BAR; see /v1/symbols"
    with pytest.raises(TicklakeAPIError) as bad:
        client.ohlcv("binance", "BTC/USDT", timeframe="2h")
    assert (bad.value.status, bad.value.parameter) == (400, "timeframe")
    with pytest.raises(TicklakeAPIError) as too_many:
        client.trades("binance", "BTC/USDT", limit=10**6)
    assert (too_many.value.status, too_many.value.parameter) == (400, "limit")
    assert "HTTP 400 (limit)" in str(too_many.value)
