"""Every bad query parameter is a 400 naming it, with a message saying what is accepted."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from tests.api.api_data import MAX_LIMIT, api_settings, assert_error
from ticklake.api import create_app
from ticklake.warehouse.reader import WarehouseReader

OK = {"exchange": "binance", "symbol": "BTC/USDT"}


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in OK.items() if k != name}


COMMON_CASES = [
    # (query, parameter at fault, words the message must contain)
    (without("exchange"), "exchange", ["required", "binance"]),
    ({**OK, "exchange": "nasdaq"}, "exchange", ["nasdaq", "binance, kraken, coinbase"]),
    ({**OK, "exchange": ""}, "exchange", ["empty"]),
    (without("symbol"), "symbol", ["required", "BASE/QUOTE"]),
    ({**OK, "symbol": "BTC-USDT"}, "symbol", ["BTC-USDT", "BASE/QUOTE", "BTC/USDT"]),
    ({**OK, "symbol": "BTCUSDT"}, "symbol", ["BASE/QUOTE"]),
    ({**OK, "symbol": "BTC/USDT/EUR"}, "symbol", ["BASE/QUOTE"]),
    ({**OK, "symbol": "BTC/"}, "symbol", ["BASE/QUOTE"]),
    ({**OK, "symbol": "BT C/USD"}, "symbol", ["BASE/QUOTE"]),
    ({**OK, "start": "yesterday"}, "start", ["RFC 3339", "epoch milliseconds"]),
    ({**OK, "start": "2026-13-01T00:00:00Z"}, "start", ["RFC 3339"]),
    ({**OK, "end": "1.5e12"}, "end", ["RFC 3339"]),
    ({**OK, "start": "-1"}, "start", ["outside"]),
    ({**OK, "end": "99999999999999999"}, "end", ["outside"]),
    ({**OK, "start": "9999-12-31T23:00:00-05:00"}, "start", ["outside"]),
    ({**OK, "end": "2150-01-01"}, "end", ["outside"]),
    ({**OK, "start": "2026-01-02T00:00:00Z", "end": "2026-01-02T00:00:00Z"}, "start", ["before end"]),
    ({**OK, "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start", ["before end"]),
    ({**OK, "start": "1767312000000", "end": "2026-01-02T00:00:00+01:00"}, "start", ["before end"]),
    ({**OK, "limit": "0"}, "limit", ["1 to 5000"]),
    ({**OK, "limit": str(MAX_LIMIT + 1)}, "limit", ["1 to 5000"]),
    ({**OK, "limit": "ten"}, "limit", ["integer"]),
    ({**OK, "limit": "1.5"}, "limit", ["integer"]),
    ({**OK, "limit": "-3"}, "limit", ["integer"]),
    ({**OK, "limit": "1_000"}, "limit", ["integer"]),
    ({**OK, "limit": "9" * 40}, "limit", ["integer"]),
    ({**OK, "limit": ""}, "limit", ["empty"]),
    ({**OK, "frobnicate": "1"}, "frobnicate", ["unknown", "frobnicate", "accepted"]),
]

OHLCV_CASES = [
    ({**OK, "timeframe": "2m"}, "timeframe", ["2m", "1m, 5m, 15m, 30m, 1h, 1d"]),
    ({**OK, "timeframe": "1M"}, "timeframe", ["1m, 5m"]),
    ({**OK, "timeframes": "5m"}, "timeframes", ["unknown", "timeframes", "timeframe"]),
    ({**OK, "cursor": "x"}, "cursor", ["unknown"]),  # candles are not paginated by cursor
]

TRADES_CASES = [
    ({**OK, "timeframe": "1m"}, "timeframe", ["unknown"]),
    ({**OK, "cursor": "garbled"}, "cursor", ["next_cursor"]),
    ({**OK, "cursor": ""}, "cursor", ["empty"]),
]


def _check(response: httpx.Response, parameter: str, words: list[str]) -> None:
    message = assert_error(response, 400, parameter)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(("query", "parameter", "words"), COMMON_CASES + OHLCV_CASES)
async def test_bad_ohlcv_parameter(api: httpx.AsyncClient, query: dict[str, str], parameter: str,
                                   words: list[str]) -> None:
    _check(await api.get("/v1/ohlcv", params=query), parameter, words)


@pytest.mark.parametrize(("query", "parameter", "words"), COMMON_CASES + TRADES_CASES)
async def test_bad_trades_parameter(api: httpx.AsyncClient, query: dict[str, str], parameter: str,
                                    words: list[str]) -> None:
    _check(await api.get("/v1/trades", params=query), parameter, words)


async def test_repeated_parameter_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/ohlcv?exchange=binance&exchange=kraken&symbol=BTC/USDT")
    _check(response, "exchange", ["2 times"])


async def test_several_unknown_parameters_are_all_named(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/ohlcv", params={**OK, "zeta": "1", "alpha": "2"})
    _check(response, "alpha", ["'alpha', 'zeta'"])


@pytest.mark.parametrize("path", ["/v1/symbols", "/health", "/openapi.json"])
async def test_endpoints_without_parameters_refuse_them(api: httpx.AsyncClient, path: str) -> None:
    _check(await api.get(path, params={"verbose": "1"}), "verbose", ["unknown"])


async def test_max_limit_comes_from_settings(warehouse: Client,
                                             make_api: Callable[[Starlette], httpx.AsyncClient]) -> None:
    app = create_app(WarehouseReader(warehouse), api_settings(max_limit=50))
    async with make_api(app) as client:
        _check(await client.get("/v1/trades", params={**OK, "limit": "51"}), "limit", ["1 to 50"])
        _check(await client.get("/v1/ohlcv", params={**OK, "limit": "51"}), "limit", ["1 to 50"])
