"""GET /v1/ohlcv: exact candles for what was inserted, window and limit semantics, and 404."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.api.api_data import Dataset, assert_error

BTC = {"exchange": "binance", "symbol": "BTC/USDT"}


@pytest.mark.parametrize("timeframe", ["1m", "5m", "15m", "30m", "1h", "1d"])
async def test_candles_match_an_independent_computation(api: httpx.AsyncClient, loaded: Dataset,
                                                        timeframe: str) -> None:
    for exchange, symbol in (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD")):
        response = await api.get("/v1/ohlcv", params={"exchange": exchange, "symbol": symbol,
                                                      "timeframe": timeframe, "limit": 5000})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-ticklake-tier"] == "warm"  # no cold tier in this app
        assert response.json() == {"exchange": exchange, "symbol": symbol, "timeframe": timeframe, "tier": "warm",
                                   "candles": loaded.candles(exchange, symbol, timeframe)}


async def test_default_timeframe_is_1m_and_default_limit_the_newest_500(api: httpx.AsyncClient,
                                                                         loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "1m")
    assert len(expected) > 500  # the dataset is built so that the default limit cuts
    body = (await api.get("/v1/ohlcv", params=BTC)).json()
    assert body["timeframe"] == "1m"
    assert body["candles"] == expected[-500:]


async def test_data_crosses_a_day_so_1d_has_two_candles(api: httpx.AsyncClient, loaded: Dataset) -> None:
    body = (await api.get("/v1/ohlcv", params={**BTC, "timeframe": "1d"})).json()
    assert [c["time"][11:] for c in body["candles"]] == ["00:00:00Z", "00:00:00Z"]
    assert sum(c["trades"] for c in body["candles"]) == len(loaded.market("binance", "BTC/USDT"))


async def test_window_is_start_inclusive_end_exclusive(api: httpx.AsyncClient, loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "1m")
    first, last = expected[100]["time"], expected[110]["time"]
    body = (await api.get("/v1/ohlcv", params={**BTC, "start": first, "end": last})).json()
    assert body["candles"] == expected[100:110]


async def test_start_inside_a_candle_excludes_that_candle(api: httpx.AsyncClient, loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "1m")
    inside = expected[100]["time"].replace(":00Z", ":00.5Z")  # half a second after the candle starts
    end_inside = expected[110]["time"].replace(":00Z", ":00.5Z")
    body = (await api.get("/v1/ohlcv", params={**BTC, "start": inside, "end": end_inside})).json()
    assert body["candles"] == expected[101:111]


async def test_limit_counts_from_start_when_given_else_back_from_end(api: httpx.AsyncClient,
                                                                     loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "5m")
    start, end = expected[3]["time"], expected[40]["time"]
    from_start = (await api.get("/v1/ohlcv", params={**BTC, "timeframe": "5m", "start": start, "end": end,
                                                     "limit": 5})).json()["candles"]
    assert from_start == expected[3:8]
    before_end = (await api.get("/v1/ohlcv", params={**BTC, "timeframe": "5m", "end": end,
                                                     "limit": 5})).json()["candles"]
    assert before_end == expected[35:40]


async def test_times_in_any_zone_or_epoch_milliseconds_mean_the_same(api: httpx.AsyncClient,
                                                                     loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "15m")
    start_utc = datetime.fromisoformat(expected[2]["time"])
    end_utc = datetime.fromisoformat(expected[9]["time"])
    spellings = [
        (expected[2]["time"], expected[9]["time"]),
        (str(int(start_utc.timestamp() * 1000)), str(int(end_utc.timestamp() * 1000))),
        (start_utc.replace(tzinfo=None).isoformat(), end_utc.replace(tzinfo=None).isoformat()),  # naive: UTC
        (start_utc.astimezone(_zone(+2)).isoformat(), end_utc.astimezone(_zone(-5)).isoformat()),
    ]
    for start, end in spellings:
        body = (await api.get("/v1/ohlcv", params={**BTC, "timeframe": "15m", "start": start, "end": end})).json()
        assert body["candles"] == expected[2:9], (start, end)


async def test_unencoded_plus_in_an_offset_is_understood(api: httpx.AsyncClient, loaded: Dataset) -> None:
    expected = loaded.candles("binance", "BTC/USDT", "1h")
    start = datetime.fromisoformat(expected[1]["time"]).astimezone(_zone(+2)).isoformat()  # ...+02:00
    # Written into the URL by hand, "+" is not encoded and reaches the server as a space.
    response = await api.get(f"/v1/ohlcv?exchange=binance&symbol=BTC/USDT&timeframe=1h&start={start}")
    assert response.json()["candles"] == expected[1:]


@pytest.mark.parametrize("spelling", ["BTC/USDT", "BTC%2FUSDT", "btc/usdt", "BTC%252FUSDT"])
async def test_symbol_spellings(api: httpx.AsyncClient, loaded: Dataset, spelling: str) -> None:
    response = await api.get(f"/v1/ohlcv?exchange=binance&symbol={spelling}&timeframe=1d")
    assert response.status_code == 200
    assert response.json()["symbol"] == "BTC/USDT"
    assert response.json()["candles"] == loaded.candles("binance", "BTC/USDT", "1d")


async def test_a_window_without_trades_is_empty_not_404(api: httpx.AsyncClient, loaded: Dataset) -> None:
    response = await api.get("/v1/ohlcv", params={**BTC, "start": "2001-01-01T00:00:00Z",
                                                  "end": "2001-01-02T00:00:00Z"})
    assert response.status_code == 200
    assert response.json()["candles"] == []


async def test_configured_market_without_data_is_empty_not_404(api: httpx.AsyncClient, loaded: Dataset) -> None:
    response = await api.get("/v1/ohlcv", params={"exchange": "coinbase", "symbol": "SOL/USD"})
    assert response.status_code == 200
    assert response.json() == {"exchange": "coinbase", "symbol": "SOL/USD", "timeframe": "1m", "tier": "warm",
                               "candles": []}


async def test_unknown_market_is_404(api: httpx.AsyncClient, loaded: Dataset) -> None:
    response = await api.get("/v1/ohlcv", params={"exchange": "binance", "symbol": "FOO/BAR"})
    assert_error(response, 404, "symbol")
    assert response.json()["error"]["message"] == "no data for binance FOO/BAR; see /v1/symbols"
    # A market stored on another exchange is still unknown on this one.
    assert_error(await api.get("/v1/ohlcv", params={"exchange": "coinbase", "symbol": "ETH/USDT"}), 404, "symbol")


def _zone(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))
