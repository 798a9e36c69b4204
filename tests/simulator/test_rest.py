"""REST endpoints: the venues' paths and formats, pagination over the whole tape, error replies.

Every walk parses pages with ticklake's own ``parse_rest_trades`` and must give the tape exactly.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import orjson

from ticklake.settings import Settings, SimulatorSettings
from ticklake.simulator import RestLimit, Simulator, VenueOptions
from ticklake.venues.binance import mapper as binance_mapper
from ticklake.venues.kraken import mapper as kraken_mapper

from .wire import binance_walk, coinbase_walk_back, key, kraken_walk

UNLIMITED = VenueOptions(rest_limit=RestLimit())


def _sim(venues: dict[str, list[str]], seed: int = 11) -> Simulator:
    return Simulator(SimulatorSettings(seed=seed, trades_per_second=80), venues, options=UNLIMITED)


async def test_urls_and_settings_for() -> None:
    async with _sim({"binance": ["BTC/USDT"], "kraken": ["BTC/USD"], "coinbase": ["BTC/USD"]}) as sim:
        assert set(sim.rest_urls) == {"binance", "kraken", "coinbase"}
        assert all(url.startswith("http://127.0.0.1:") for url in sim.rest_urls.values())
        settings = sim.settings_for(Settings())
        assert settings.venues.kraken.rest_url == sim.rest_urls["kraken"]
        assert settings.venues.kraken.ws_url == sim.ws_urls["kraken"]


async def test_binance_historical_trades_walk_the_whole_tape(http: httpx.AsyncClient) -> None:
    async with _sim({"binance": ["BTC/USDT", "ETH/USDT"]}) as sim:
        sim.pause()
        tape = sim.tape("binance", "BTC/USDT")
        base = sim.rest_urls["binance"]
        walked = await binance_walk(http, base, "BTCUSDT", tape[0].trade_id, 7)
        assert [key(t) for t in walked] == [key(t) for t in tape]
        assert {t.symbol for t in walked} == {"BTC/USDT"}

        # Without fromId: the most recent ``limit``; /trades likewise; the default limit is 500.
        recent = await http.get(f"{base}/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "limit": 5})
        assert [key(t) for t in binance_mapper.parse_rest_trades(recent.content, "BTCUSDT", 0)] == \
            [key(t) for t in tape[-5:]]
        latest = await http.get(f"{base}/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 3})
        assert [t.trade_id for t in binance_mapper.parse_rest_trades(latest.content, "BTCUSDT", 0)] == \
            [t.trade_id for t in tape[-3:]]
        default = await http.get(f"{base}/api/v3/trades", params={"symbol": "BTCUSDT"})
        assert len(default.json()) == min(500, len(tape))

        row = recent.json()[0]
        assert list(row) == ["id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"]
        assert Decimal(row["quoteQty"]) == Decimal(row["price"]) * Decimal(row["qty"])
        assert isinstance(row["time"], int) and row["time"] == tape[-5].ts_us // 1000  # milliseconds
        past_the_end = await http.get(f"{base}/api/v3/historicalTrades",
                                      params={"symbol": "BTCUSDT", "fromId": tape[-1].trade_id + 1})
        assert past_the_end.json() == []


async def test_binance_error_replies(http: httpx.AsyncClient) -> None:
    async with _sim({"binance": ["BTC/USDT"]}) as sim:
        url = sim.rest_urls["binance"] + "/api/v3/historicalTrades"
        for params, code in (({"symbol": "NOPEUSDT"}, -1121), ({"symbol": "btcusdt"}, -1121), ({}, -1102),
                             ({"symbol": "BTCUSDT", "limit": "ten"}, -1100),
                             ({"symbol": "BTCUSDT", "fromId": "-3"}, -1100)):
            response = await http.get(url, params=params)
            assert response.status_code == 400, params
            assert response.json()["code"] == code, params
        invalid = (await http.get(url, params={"symbol": "NOPEUSDT"})).json()
        assert invalid == {"code": -1121, "msg": "Invalid symbol."}


async def test_kraken_trades_walk_the_whole_tape_across_shared_microseconds(http: httpx.AsyncClient) -> None:
    async with _sim({"kraken": ["BTC/USD"]}) as sim:
        sim.pause()
        tape = sim.tape("kraken", "BTC/USD")
        # Several fills share a microsecond, so pages of 3 end inside such runs: the cursor must
        # neither lose nor repeat the rest of the run.
        assert len({t.ts_us for t in tape}) < len(tape)
        walked = await kraken_walk(http, sim.rest_urls["kraken"], "BTC/USD", "0", 3)
        assert [key(t) for t in walked] == [key(t) for t in tape]

        response = await http.get(sim.rest_urls["kraken"] + "/0/public/Trades", params={"pair": "BTC/USD", "count": 4})
        body = orjson.loads(response.content)
        assert body["error"] == [] and set(body["result"]) == {"BTC/USD", "last"}
        rows = body["result"]["BTC/USD"]
        assert [row[6] for row in rows] == [t.trade_id for t in tape[-4:]]  # no since: the most recent
        price, volume, when, side, ordertype, misc, trade_id = rows[0]
        assert isinstance(price, str) and isinstance(volume, str) and isinstance(when, float)
        assert side in ("b", "s") and ordertype in ("m", "l") and misc == "" and isinstance(trade_id, int)
        last = int(body["result"]["last"])
        assert last // 1000 == tape[-1].ts_us  # epoch nanoseconds
        nothing_new = await http.get(sim.rest_urls["kraken"] + "/0/public/Trades",
                                     params={"pair": "BTC/USD", "since": str(last)})
        page = kraken_mapper.parse_rest_trades(nothing_new.content, "BTC/USD", 0)
        assert page.trades == () and page.last == str(last)


async def test_kraken_since_in_seconds_and_errors(http: httpx.AsyncClient) -> None:
    async with _sim({"kraken": ["BTC/USD"]}) as sim:
        sim.pause()
        tape = sim.tape("kraken", "BTC/USD")
        url = sim.rest_urls["kraken"] + "/0/public/Trades"
        middle = tape[len(tape) // 2]
        seconds = f"{middle.ts_us // 1_000_000}.{middle.ts_us % 1_000_000:06d}"
        page = kraken_mapper.parse_rest_trades(
            (await http.get(url, params={"pair": "BTC/USD", "since": seconds})).content, "BTC/USD", 0)
        assert [t.trade_id for t in page.trades] == [t.trade_id for t in tape if t.ts_us > middle.ts_us or (
            t.ts_us == middle.ts_us and t.trade_id > min(x.trade_id for x in tape if x.ts_us == middle.ts_us))]
        for params, error in (({"pair": "XBTUSD"}, "EQuery:Unknown asset pair"), ({}, "EGeneral:Invalid arguments"),
                              ({"pair": "BTC/USD", "since": "soon"}, "EGeneral:Invalid arguments:since")):
            response = await http.get(url, params=params)
            assert response.status_code == 200 and response.json() == {"error": [error]}, params


async def test_coinbase_trades_walk_back_and_forward(http: httpx.AsyncClient) -> None:
    async with _sim({"coinbase": ["BTC/USD", "ETH/USD"]}) as sim:
        sim.pause()
        tape = sim.tape("coinbase", "BTC/USD")
        base = sim.rest_urls["coinbase"]
        walked = await coinbase_walk_back(http, base, "BTC-USD", 7)
        assert [key(t) for t in walked] == [key(t) for t in tape]

        # Forward from an old id with before=<CB-BEFORE>: each page is the one just newer.
        forward: list[int] = []
        cursor = tape[9].trade_id
        while True:
            response = await http.get(f"{base}/products/BTC-USD/trades", params={"limit": 4, "before": cursor})
            ids = [row["trade_id"] for row in response.json()]
            if not ids:
                break
            assert ids == sorted(ids, reverse=True)  # newest first
            forward.extend(reversed(ids))
            cursor = int(response.headers["cb-before"])
        assert forward == [t.trade_id for t in tape[10:]]

        newest = await http.get(f"{base}/products/BTC-USD/trades", params={"limit": 2})
        rows = newest.json()
        assert [row["trade_id"] for row in rows] == [tape[-1].trade_id, tape[-2].trade_id]
        assert set(rows[0]) == {"time", "trade_id", "price", "size", "side"}
        assert rows[0]["side"] == {"buy": "sell", "sell": "buy"}[tape[-1].side]  # the maker's side
        assert rows[0]["time"].endswith("Z") and len(rows[0]["time"].split(".")[1]) == 7  # µs + Z
        assert len((await http.get(f"{base}/products/BTC-USD/trades")).json()) == min(1000, len(tape))


async def test_coinbase_error_replies(http: httpx.AsyncClient) -> None:
    async with _sim({"coinbase": ["BTC/USD"]}) as sim:
        base = sim.rest_urls["coinbase"]
        missing = await http.get(f"{base}/products/BTC-EUR/trades")
        assert missing.status_code == 404 and missing.json() == {"message": "NotFound"}
        bad = await http.get(f"{base}/products/BTC-USD/trades", params={"after": "x"})
        assert bad.status_code == 400 and "message" in bad.json()


async def test_rest_requests_are_recorded(http: httpx.AsyncClient) -> None:
    async with _sim({"binance": ["BTC/USDT"]}) as sim:
        await http.get(sim.rest_urls["binance"] + "/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 1})
        await http.get(sim.rest_urls["binance"] + "/api/v3/trades", params={"symbol": "NOPE"})
        records = sim.rest_requests("binance")
        assert [(r.path, r.status) for r in records] == [("/api/v3/trades", 200), ("/api/v3/trades", 400)]
        assert records[0].query == "symbol=BTCUSDT&limit=1"
