"""REST rate limits and scripted REST failures, each venue the way it does it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.settings import SimulatorSettings
from ticklake.simulator import RestLimit, Simulator, VenueOptions
from ticklake.venues.coinbase import mapper as coinbase_mapper
from ticklake.venues.kraken import mapper as kraken_mapper

pytestmark = pytest.mark.integration

SETTINGS = SimulatorSettings(seed=5, trades_per_second=40)


async def test_binance_weight_429_then_418_ban(http: httpx.AsyncClient) -> None:
    # An hour-long window, so no window boundary falls inside the test.
    limit = RestLimit(weight_per_window=60, window_s=3600.0, ban_after=1, ban_s=2.0)
    async with Simulator(SETTINGS, {"binance": ["BTC/USDT"]}, options=VenueOptions(rest_limit=limit)) as sim:
        url = sim.rest_urls["binance"] + "/api/v3/historicalTrades"
        params: dict[str, str | int] = {"symbol": "BTCUSDT", "limit": 2}
        first, second = [await http.get(url, params=params) for _ in range(2)]
        assert (first.status_code, second.status_code) == (200, 200)
        assert (first.headers["x-mbx-used-weight-1m"], second.headers["x-mbx-used-weight-1m"]) == ("25", "50")

        limited = await http.get(url, params=params)  # 50 + 25 > 60
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert limited.headers["x-mbx-used-weight-1m"] == "50"
        body = limited.json()
        assert body["code"] == -1003 and body["msg"].startswith("Too much request weight used")

        banned = await http.get(url, params=params)  # refused again instead of backing off: banned
        assert banned.status_code == 418
        assert banned.headers["retry-after"] == "2"
        assert banned.json()["code"] == -1003 and "banned until" in banned.json()["msg"]
        still = await http.get(sim.rest_urls["binance"] + "/api/v3/trades", params=params)
        assert still.status_code == 418  # the ban is per client, whatever the endpoint
        await asyncio.sleep(2.05)
        assert (await http.get(url, params=params)).status_code == 429  # ban over, weight still spent


async def test_binance_weight_resets_with_the_window(http: httpx.AsyncClient) -> None:
    limit = RestLimit(weight_per_window=25, window_s=1.0, ban_after=10)
    async with Simulator(SETTINGS, {"binance": ["BTC/USDT"]}, options=VenueOptions(rest_limit=limit)) as sim:
        url = sim.rest_urls["binance"] + "/api/v3/trades"
        statuses = [(await http.get(url, params={"symbol": "BTCUSDT"})).status_code for _ in range(2)]
        if statuses == [200, 200]:  # the two straddled a window boundary: try once more
            statuses = [(await http.get(url, params={"symbol": "BTCUSDT"})).status_code for _ in range(2)]
        assert 429 in statuses
        await asyncio.sleep(1.05)
        response = await http.get(url, params={"symbol": "BTCUSDT"})
        assert response.status_code == 200 and response.headers["x-mbx-used-weight-1m"] == "25"


async def test_binance_default_limit_reports_weight(http: httpx.AsyncClient) -> None:
    async with Simulator(SETTINGS, {"binance": ["BTC/USDT"]}) as sim:
        response = await http.get(sim.rest_urls["binance"] + "/api/v3/trades", params={"symbol": "BTCUSDT"})
        assert response.status_code == 200 and response.headers["x-mbx-used-weight-1m"] == "25"
        rest = sim.venue("binance").rest
        assert rest is not None and rest.api.limit.weight_per_window == 6000


@pytest.mark.parametrize("status", [200, 429])
async def test_kraken_too_many_requests(http: httpx.AsyncClient, status: int) -> None:
    limit = RestLimit(per_second=0.2, burst=2, error_status=status)
    async with Simulator(SETTINGS, {"kraken": ["BTC/USD"]}, options=VenueOptions(rest_limit=limit)) as sim:
        url = sim.rest_urls["kraken"] + "/0/public/Trades"
        ok = [await http.get(url, params={"pair": "BTC/USD"}) for _ in range(2)]
        assert [r.status_code for r in ok] == [200, 200]
        refused = await http.get(url, params={"pair": "BTC/USD"})
        assert refused.status_code == status
        assert refused.json() == {"error": ["EGeneral:Too many requests"]}
        with pytest.raises(MalformedResponse, match="Too many requests"):
            kraken_mapper.parse_rest_trades(refused.content, "BTC/USD", 0)


async def test_coinbase_public_rate_limit(http: httpx.AsyncClient) -> None:
    limit = RestLimit(per_second=0.2, burst=3)
    async with Simulator(SETTINGS, {"coinbase": ["BTC/USD"]}, options=VenueOptions(rest_limit=limit)) as sim:
        url = sim.rest_urls["coinbase"] + "/products/BTC-USD/trades"
        statuses = [(await http.get(url)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = await http.get(url)
        assert refused.status_code == 429 and refused.json() == {"message": "Public rate limit exceeded"}
        with pytest.raises(MalformedResponse, match="Public rate limit exceeded"):
            coinbase_mapper.parse_rest_trades(refused.content, "BTC-USD", 0)
        sim.set_rest_limit("coinbase", RestLimit())
        assert (await http.get(url)).status_code == 200


@pytest.mark.parametrize(("exchange", "symbol", "path", "params"), [
    ("binance", "BTC/USDT", "/api/v3/historicalTrades", {"symbol": "BTCUSDT"}),
    ("kraken", "BTC/USD", "/0/public/Trades", {"pair": "BTC/USD"}),
    ("coinbase", "BTC/USD", "/products/BTC-USD/trades", {}),
])
async def test_rest_fail_next(http: httpx.AsyncClient, exchange: str, symbol: str, path: str,
                              params: dict[str, str]) -> None:
    async with Simulator(SETTINGS, {exchange: [symbol]}) as sim:
        url = sim.rest_urls[exchange] + path
        sim.rest_fail_next(exchange, 2, status=429, retry_after_s=3)
        sim.rest_fail_next(exchange, 1, status=503, retry_after_s=None)
        first, second, third, fourth = [await http.get(url, params=params) for _ in range(4)]
        assert [r.status_code for r in (first, second, third, fourth)] == [429, 429, 503, 200]
        assert first.headers["retry-after"] == "3" and "retry-after" not in third.headers
        body = first.json()
        if exchange == "binance":
            assert body["code"] == -1003, first.text
        else:
            assert body == {"kraken": {"error": ["EGeneral:Too many requests"]},
                            "coinbase": {"message": "Public rate limit exceeded"}}[exchange]
        assert third.json() != first.json()
        assert [e.fault for e in sim.fault_log] == ["rest_fail_next", "rest_fail_next"]
        assert [r.status for r in sim.rest_requests(exchange)] == [429, 429, 503, 200]
