"""Each scripted fault, observed on a raw socket (and on REST where the trades must still be)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import orjson

from ticklake.exchanges.mappers import parser_for
from ticklake.settings import SimulatorSettings
from ticklake.simulator import RestLimit, Simulator, VenueOptions
from ticklake.simulator.faults import GARBLE_MARK
from ticklake.venues.binance import mapper as binance_mapper

from .wire import coinbase_walk_back, connect, until

FAST = VenueOptions(tick_s=0.01, batch_interval_s=0.05, rest_limit=RestLimit())


def _sim(venues: dict[str, list[str]], options: VenueOptions = FAST, seed: int = 7) -> Simulator:
    return Simulator(SimulatorSettings(seed=seed, trades_per_second=100), venues, options=options)


def _tape_ids(sim: Simulator, exchange: str, symbol: str) -> list[int]:
    return [t.trade_id for t in sim.tape(exchange, symbol)]


async def test_skip_next_ids_are_absent_on_the_socket_and_present_on_rest(http: httpx.AsyncClient) -> None:
    async with _sim({"binance": ["BTC/USDT"]}) as sim:
        conn = await connect(sim, "binance", "BTC/USDT")
        await until(lambda: len(conn.ids()) >= 3, what="first trades")
        sim.skip_next("binance", "BTC/USDT", 5)
        await until(lambda: len(sim.skipped_ids("binance", "BTC/USDT")) == 5, what="5 trades skipped")
        skipped = sim.skipped_ids("binance", "BTC/USDT")
        await until(lambda: conn.ids()[-1] > skipped[-1] + 3, what="trades after the gap")
        ids = conn.ids()
        assert not set(skipped) & set(ids)
        tape = _tape_ids(sim, "binance", "BTC/USDT")
        window = tape[tape.index(ids[0]):tape.index(ids[-1]) + 1]
        assert ids == [i for i in window if i not in skipped]  # exactly the skipped ones are missing
        assert skipped == list(range(skipped[0], skipped[0] + 5))  # the next five, in a row
        response = await http.get(sim.rest_urls["binance"] + "/api/v3/historicalTrades",
                                  params={"symbol": "BTCUSDT", "fromId": skipped[0], "limit": 5})
        assert [t.trade_id for t in binance_mapper.parse_rest_trades(response.content, "BTCUSDT", 0)] == skipped
        assert [e.fault for e in sim.fault_log] == ["skip_next"]
        conn.close()


async def test_skipped_trades_are_not_in_later_snapshots_either() -> None:
    async with _sim({"kraken": ["BTC/USD"]}) as sim:
        sim.skip_next("kraken", "BTC/USD", 4)
        await until(lambda: len(sim.skipped_ids("kraken", "BTC/USD")) == 4)
        await asyncio.sleep(0.05)  # a few trades after the gap
        conn = await connect(sim, "kraken", "BTC/USD", snapshot=True)
        await until(lambda: any('"type":"snapshot"' in t for t in conn.client.texts), what="the snapshot")
        snapshot = orjson.loads(next(t for t in conn.client.texts if '"type":"snapshot"' in t))
        ids = [row["trade_id"] for row in snapshot["data"]]
        skipped = sim.skipped_ids("kraken", "BTC/USD")
        assert len(ids) == 50 and not set(ids) & set(skipped)
        assert ids[0] < skipped[0] and ids[-1] > skipped[-1]  # the gap is inside the snapshot
        conn.close()


async def test_stall_sends_nothing_keeps_the_connection_and_loses_the_trades(http: httpx.AsyncClient) -> None:
    options = VenueOptions(tick_s=0.01, ping_interval_s=0.1, rest_limit=RestLimit())
    async with _sim({"binance": ["BTC/USDT"]}, options) as sim:
        conn = await connect(sim, "binance", "BTC/USDT")
        await until(lambda: len(conn.client.pings) >= 2 and len(conn.ids()) >= 3, what="pings and trades")
        assert sim.stall("binance", 0.6) == 1
        stalled_at = time.monotonic()
        conn.transport.send_ping(b"anyone?")
        await asyncio.sleep(0.05)  # frames already in flight
        texts, pings = len(conn.client.texts), len(conn.client.pings)
        last_before = conn.ids()[-1]
        other = await connect(sim, "binance", "BTC/USDT")  # a new connection is served meanwhile
        await until(lambda: len(other.ids()) >= 2, timeout=0.5, what="trades on a new connection")
        await asyncio.sleep(0.4)
        assert (len(conn.client.texts), len(conn.client.pings)) == (texts, pings)  # nothing at all
        assert conn.client.pongs == [] and not conn.client.disconnected
        await until(lambda: len(conn.client.texts) > texts, timeout=1.5, what="trades after the stall")
        assert time.monotonic() - stalled_at >= 0.55
        await until(lambda: len(conn.client.pings) > pings, timeout=1.0, what="pings after the stall")
        assert conn.client.pongs == [] and not conn.client.disconnected  # that ping is never answered
        first_after = next(i for i in conn.ids() if i > last_before)
        lost = [i for i in _tape_ids(sim, "binance", "BTC/USDT") if last_before < i < first_after]
        assert lost, "trades published during the stall"
        response = await http.get(sim.rest_urls["binance"] + "/api/v3/historicalTrades",
                                  params={"symbol": "BTCUSDT", "fromId": lost[0], "limit": len(lost)})
        assert [row["id"] for row in response.json()] == lost
        conn.close()
        other.close()


async def test_duplicate_next_sends_frames_twice_in_a_row() -> None:
    async with _sim({"kraken": ["BTC/USD"]}) as sim:
        conn = await connect(sim, "kraken", "BTC/USD")
        await until(lambda: len(conn.ids()) >= 1)
        sim.duplicate_next("kraken", 2)

        def trade_frames() -> list[str]:
            return [t for t in conn.client.texts if t.startswith('{"channel":"trade"')]

        await until(lambda: sum(n == 2 for n in Counter(trade_frames()).values()) == 2
                    and trade_frames()[-1] != trade_frames()[-2], what="two duplicated frames, then more")
        frames = trade_frames()
        twice = [text for text, n in Counter(frames).items() if n == 2]
        assert all(n <= 2 for n in Counter(frames).values())
        first = frames.index(twice[0])
        assert frames[first:first + 4] == [twice[0], twice[0], twice[1], twice[1]]
        conn.close()


async def test_reorder_next_releases_held_frames_shuffled() -> None:
    async with _sim({"binance": ["BTC/USDT"]}) as sim:
        conn = await connect(sim, "binance", "BTC/USDT")
        await until(lambda: len(conn.ids()) >= 2)
        sim.reorder_next("binance", 5)
        await until(lambda: not sim.venue("binance").faults.held and sim.venue("binance").faults.reorder == 0
                    and len(conn.ids()) >= 12, what="the held frames released")
        await asyncio.sleep(0.05)
        ids = conn.ids()
        assert ids != sorted(ids)
        assert sorted(ids) == list(range(ids[0], ids[0] + len(ids)))  # none lost, none repeated
        moved = [i for i, (got, want) in enumerate(zip(ids, sorted(ids), strict=True)) if got != want]
        assert 2 <= len(moved) <= 5 and moved[-1] - moved[0] < 5  # only the five held frames moved
        conn.close()


async def test_reorder_hold_times_out() -> None:
    async with _sim({"coinbase": ["BTC/USD"]}) as sim:
        conn = await connect(sim, "coinbase", "BTC/USD")
        await until(lambda: len(conn.ids()) >= 1)
        sim.reorder_next("coinbase", 1000, max_hold_s=0.2)  # far more than arrive in 0.2 s
        held_from = len(conn.client.texts)
        await asyncio.sleep(0.15)
        assert sim.venue("coinbase").faults.held, "frames are held"
        await until(lambda: not sim.venue("coinbase").faults.held, timeout=1.0, what="released after max_hold_s")
        await asyncio.sleep(0.1)
        assert len(conn.client.texts) > held_from
        ids = conn.ids()
        assert sorted(set(ids)) == list(range(min(ids), max(ids) + 1))  # all delivered
        conn.close()


async def test_malformed_next_garbles_frames_whose_trades_stay_on_rest(http: httpx.AsyncClient) -> None:
    async with _sim({"coinbase": ["BTC/USD"]}) as sim:
        conn = await connect(sim, "coinbase", "BTC/USD")
        await until(lambda: len(conn.ids()) >= 1)
        sim.malformed_next("coinbase", 2)
        await until(lambda: sum(t.endswith(GARBLE_MARK) for t in conn.client.texts) == 2, what="two garbled")
        garbled_ids = sim.garbled_ids("coinbase", "BTC/USD")
        await until(lambda: conn.ids()[-1] > garbled_ids[-1], what="good frames after")
        parse = parser_for("coinbase")
        for text in (t for t in conn.client.texts if t.endswith(GARBLE_MARK)):
            parsed = parse(text, 0)
            assert parsed.kind == "error" and "invalid JSON" in parsed.error
        assert not set(garbled_ids) & set(conn.ids())
        sim.pause()
        on_rest = [t.trade_id for t in await coinbase_walk_back(http, sim.rest_urls["coinbase"], "BTC-USD", 1000)]
        assert set(garbled_ids) <= set(on_rest)
        assert on_rest == _tape_ids(sim, "coinbase", "BTC/USD")
        conn.close()


async def test_binance_shutdown_announces_then_closes() -> None:
    options = VenueOptions(tick_s=0.01, shutdown_grace_s=0.3, rest_limit=RestLimit())
    async with _sim({"binance": ["BTC/USDT"]}, options) as sim:
        raw = await connect(sim, "binance", "BTC/USDT")
        combined = await connect(sim, "binance", "BTC/USDT", combined=True)
        await until(lambda: bool(raw.ids()) and bool(combined.ids()))
        assert sim.shutdown("binance") == 2
        shut_at = time.monotonic()
        await until(lambda: raw.client.disconnected and combined.client.disconnected, what="both closed")
        assert time.monotonic() - shut_at >= 0.25  # the grace
        for conn in (raw, combined):
            notices = [t for t in conn.client.texts if "serverShutdown" in t]
            assert len(notices) == 1
            assert binance_mapper.parse_frame(notices[0], 0).kind == "shutdown"
            assert conn.client.close_code == 1001
        assert set(orjson.loads(next(t for t in raw.client.texts if "serverShutdown" in t))) == {"e", "E"}
        wrapped = orjson.loads(next(t for t in combined.client.texts if "serverShutdown" in t))
        assert wrapped["stream"] == "!serverShutdown" and wrapped["data"]["e"] == "serverShutdown"
        again = await connect(sim, "binance", "BTC/USDT")  # a new connection is accepted
        await until(lambda: bool(again.ids()))
        again.close()


async def test_kraken_shutdown_closes_at_once_with_going_away() -> None:
    async with _sim({"kraken": ["BTC/USD"]}) as sim:
        conn = await connect(sim, "kraken", "BTC/USD")
        await until(lambda: bool(conn.ids()))
        assert sim.shutdown("kraken") == 1
        await until(lambda: conn.client.disconnected, timeout=0.5)
        assert conn.client.close_code == 1001


async def test_connections_older_than_the_age_limit_are_closed() -> None:
    options = VenueOptions(tick_s=0.01, max_connection_age_s=0.3, rest_limit=RestLimit())
    async with _sim({"kraken": ["BTC/USD"], "binance": ["BTC/USDT"]}, options) as sim:
        started = time.monotonic()
        conn = await connect(sim, "kraken", "BTC/USD")
        await until(lambda: conn.client.disconnected, timeout=2.0, what="the age limit")
        assert time.monotonic() - started >= 0.28
        assert conn.client.close_code == 1001 and conn.ids()
    async with _sim({"binance": ["BTC/USDT"]}) as sim:
        assert sim.venue("binance").max_connection_age_s == 24 * 3600


async def test_clear_faults_undoes_what_is_pending() -> None:
    async with _sim({"binance": ["BTC/USDT"]}) as sim:
        conn = await connect(sim, "binance", "BTC/USDT")
        await until(lambda: bool(conn.ids()))
        sim.skip_next("binance", "BTC/USDT", 10_000)
        sim.reorder_next("binance", 10_000, max_hold_s=60)
        sim.stall("binance", 60)
        await asyncio.sleep(0.1)
        count = len(conn.ids())
        sim.clear_faults("binance")
        await until(lambda: len(conn.ids()) >= count + 5, what="trades flowing again")
        assert [e.fault for e in sim.fault_log][-1] == "clear_faults"
        conn.close()


async def test_frame_filter_still_applies_alongside_faults() -> None:
    async with _sim({"kraken": ["BTC/USD"]}) as sim:
        seen: list[str] = []

        def spy(conn: object, text: str) -> list[str]:
            seen.append(text)
            return [text]

        sim.venue("kraken").frame_filter = spy
        sim.malformed_next("kraken", 1)
        conn = await connect(sim, "kraken", "BTC/USD")
        await until(lambda: any(t.endswith(GARBLE_MARK) for t in seen) and len(conn.ids()) >= 2)
        assert any(t.endswith(GARBLE_MARK) for t in conn.client.texts)
        conn.close()
