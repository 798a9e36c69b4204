"""GET /v1/symbols: stored markets merged with configured ones."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.api.api_data import Dataset


async def test_stored_and_configured_markets(api: httpx.AsyncClient, loaded: Dataset) -> None:
    def days(exchange: str, symbol: str) -> tuple[str, str]:
        trades = loaded.market(exchange, symbol)
        first, last = (datetime.fromtimestamp(t.ts_us // 1_000_000, UTC) for t in (trades[0], trades[-1]))
        return f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}"

    def stored(exchange: str, symbol: str, configured: bool) -> dict[str, object]:
        first_day, last_day = days(exchange, symbol)
        return {"exchange": exchange, "symbol": symbol, "first_day": first_day, "last_day": last_day,
                "trades": len(loaded.market(exchange, symbol)), "configured": configured,
                "completeness": "id-sequenced"}

    response = await api.get("/v1/symbols")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"symbols": [
        stored("binance", "BTC/USDT", configured=True),
        stored("binance", "ETH/USDT", configured=False),
        {"exchange": "coinbase", "symbol": "SOL/USD", "first_day": None, "last_day": None, "trades": 0,
         "configured": True, "completeness": "id-sequenced"},
        stored("kraken", "BTC/USD", configured=False),
    ]}
    btc = response.json()["symbols"][0]
    assert btc["first_day"] != btc["last_day"]  # the dataset crosses a UTC midnight


async def test_empty_warehouse_lists_configured_markets_only(api: httpx.AsyncClient) -> None:
    body = (await api.get("/v1/symbols")).json()
    assert [(s["exchange"], s["symbol"], s["trades"], s["first_day"]) for s in body["symbols"]] == [
        ("binance", "BTC/USDT", 0, None), ("coinbase", "SOL/USD", 0, None)]
