"""GET /v1/trades: exact records, keyset pagination over (exchange time, trade id), windows, cursors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.api_data import CURSORS, Dataset, assert_error, iso_micros

BTC = {"exchange": "binance", "symbol": "BTC/USDT"}
ETH = {"exchange": "binance", "symbol": "ETH/USDT"}


async def walk(api: httpx.AsyncClient, params: dict[str, Any], page_size: int) -> list[list[dict[str, Any]]]:
    """Every page, following next_cursor until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, "limit": page_size, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/v1/trades", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["trades"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 10_000


async def test_one_page_holds_exact_records(api: httpx.AsyncClient, loaded: Dataset) -> None:
    for exchange, symbol in (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD")):
        response = await api.get("/v1/trades", params={"exchange": exchange, "symbol": symbol, "limit": 5000})
        assert response.status_code == 200
        assert response.headers["x-ticklake-tier"] == "warm"  # no cold tier in this app
        last = loaded.market(exchange, symbol)[-1]
        assert response.json() == {"exchange": exchange, "symbol": symbol, "tier": "warm",
                                   "trades": loaded.trade_records(exchange, symbol), "next_cursor": None,
                                   "tail_cursor": CURSORS.encode(exchange, symbol, last.ts_us, last.trade_id)}


async def test_trade_ids_beyond_float_precision_survive(api: httpx.AsyncClient, loaded: Dataset) -> None:
    body = (await api.get("/v1/trades", params={"exchange": "kraken", "symbol": "BTC/USD"})).json()
    assert body["trades"][-1]["trade_id"] == str(2**64 - 100 + 29)


async def test_default_page_is_1000(api: httpx.AsyncClient, loaded: Dataset) -> None:
    body = (await api.get("/v1/trades", params=BTC)).json()
    expected = loaded.trade_records("binance", "BTC/USDT")
    assert len(expected) < 1000
    assert body["trades"] == expected and body["next_cursor"] is None


@pytest.mark.parametrize(("params", "page_size"), [(BTC, 7), (BTC, 100), (BTC, 701), (BTC, 702), (ETH, 1),
                                                   (ETH, 3), (ETH, 39), (ETH, 40)])
async def test_pagination_walks_every_trade_once_in_order(api: httpx.AsyncClient, loaded: Dataset,
                                                          params: dict[str, str], page_size: int) -> None:
    expected = loaded.trade_records(params["exchange"], params["symbol"])
    pages = await walk(api, params, page_size)
    assert [t for page in pages for t in page] == expected
    assert all(len(page) == page_size for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= page_size
    assert len(pages) == -(-len(expected) // page_size)


async def test_a_page_boundary_inside_equal_timestamps(api: httpx.AsyncClient, loaded: Dataset) -> None:
    trades = loaded.market("binance", "BTC/USDT")
    tie = next(i for i in range(1, len(trades)) if trades[i].ts_us == trades[i - 1].ts_us)
    # A page that ends on the first trade of a group sharing one timestamp.
    pages = await walk(api, BTC, tie)
    assert [t["trade_id"] for t in pages[0]][-1] == str(trades[tie - 1].trade_id)
    assert pages[1][0]["trade_id"] == str(trades[tie].trade_id)
    assert [t for page in pages for t in page] == loaded.trade_records("binance", "BTC/USDT")


async def test_window_is_start_inclusive_end_exclusive_to_the_microsecond(api: httpx.AsyncClient,
                                                                          loaded: Dataset) -> None:
    trades = loaded.market("binance", "BTC/USDT")
    records = loaded.trade_records("binance", "BTC/USDT")
    first, last = 200, 260
    start, end = iso_micros(trades[first].ts_us), iso_micros(trades[last].ts_us)
    first = next(i for i, t in enumerate(trades) if t.ts_us == trades[first].ts_us)  # its whole tie group
    last = next(i for i, t in enumerate(trades) if t.ts_us == trades[last].ts_us)
    body = (await api.get("/v1/trades", params={**BTC, "start": start, "end": end})).json()
    assert body["trades"] == records[first:last]
    one_us_later = iso_micros(trades[first].ts_us + 1)
    body = (await api.get("/v1/trades", params={**BTC, "start": one_us_later, "end": end})).json()
    assert body["trades"][0]["time"] > records[first]["time"]


async def test_pagination_within_a_window(api: httpx.AsyncClient, loaded: Dataset) -> None:
    trades = loaded.market("binance", "BTC/USDT")
    records = loaded.trade_records("binance", "BTC/USDT")
    window = {**BTC, "start": records[300]["time"], "end": records[420]["time"]}
    expected = [r for t, r in zip(trades, records, strict=True)
                if trades[300].ts_us <= t.ts_us < trades[420].ts_us]
    pages = await walk(api, window, 17)
    assert [t for page in pages for t in page] == expected


async def test_cursor_of_another_market_is_refused(api: httpx.AsyncClient, loaded: Dataset) -> None:
    cursor = (await api.get("/v1/trades", params={**BTC, "limit": 2})).json()["next_cursor"]
    assert cursor
    assert_error(await api.get("/v1/trades", params={**ETH, "cursor": cursor}), 400, "cursor")


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "garbage", "padding"])
async def test_damaged_cursor_is_400(api: httpx.AsyncClient, loaded: Dataset, damage: str) -> None:
    cursor = (await api.get("/v1/trades", params={**BTC, "limit": 5})).json()["next_cursor"]
    damaged = {
        "flip": cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:],
        "truncate": cursor[:-1],
        "extend": cursor + "A",
        "garbage": "not-a-cursor!",
        "padding": cursor + "==",
    }[damage]
    message = assert_error(await api.get("/v1/trades", params={**BTC, "cursor": damaged}), 400, "cursor")
    assert "next_cursor" in message


async def test_configured_market_without_data_is_empty(api: httpx.AsyncClient, loaded: Dataset) -> None:
    body = (await api.get("/v1/trades", params={"exchange": "coinbase", "symbol": "SOL/USD"})).json()
    assert body == {"exchange": "coinbase", "symbol": "SOL/USD", "tier": "warm", "trades": [], "next_cursor": None,
                    "tail_cursor": None}


async def test_unknown_market_is_404(api: httpx.AsyncClient, loaded: Dataset) -> None:
    response = await api.get("/v1/trades", params={"exchange": "kraken", "symbol": "FOO/BAR"})
    assert_error(response, 404, "symbol")
    assert response.json()["error"]["message"] == "no data for kraken FOO/BAR; see /v1/symbols"
