"""Backfill end to end against the simulator: REST throttles, pagination, resuming after a downtime,
the look-back, and run_feeds wiring it all from Settings."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from tests.feeds import conftest as feeds
from ticklake.exchanges.feeds import run_feeds
from ticklake.model import ResumePoint
from ticklake.settings import FeedSettings, Settings, SimulatorSettings, VenueSettings, VenuesSettings
from ticklake.simulator import Simulator, VenueOptions
from ticklake.simulator.rest import RestLimit
from ticklake.venues import to_native

pytestmark = pytest.mark.integration

FAST = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05)


def counters(exchange: str, symbol: str) -> dict[str, float]:
    return {name: feeds.sym_metric(f"ticklake_feed_{name}_total", exchange, symbol)
            for name in ("gaps", "trades_backfilled", "trades_unrecoverable")}


def deltas(before: dict[str, float], exchange: str, symbol: str) -> dict[str, float]:
    after = counters(exchange, symbol)
    return {name: after[name] - before[name] for name in after}


def rest_metric(exchange: str, status: str) -> float:
    from ticklake.ops.metrics import REGISTRY

    return REGISTRY.get_sample_value("ticklake_feed_rest_requests_total",
                                     {"exchange": exchange, "status": status}) or 0.0


async def skip_and_reveal(sim: Simulator, tap: feeds.BusTap, exchange: str, symbol: str, count: int) -> list[int]:
    """Hide the next ``count`` trades of ``symbol`` from every socket; wait for trades after them."""
    sim.skip_next(exchange, symbol, count)
    await tap.wait_for(lambda: len(sim.skipped_ids(exchange, symbol)) == count, what="the skipped trades")
    seen = len(tap.trades(symbol))
    await tap.wait_for(lambda: len(tap.trades(symbol)) >= seen + 5, what="trades after the skipped ones")
    return sim.skipped_ids(exchange, symbol)


async def test_429_with_retry_after_is_waited_out(feed_settings, bus, taps, backfilling, running) -> None:
    async with Simulator(SimulatorSettings(trades_per_second=40, seed=2), {"binance": ["BTC/USDT"]},
                         options=FAST) as sim:
        tap = taps("binance")
        feed = backfilling("binance", ["BTC/USDT"], bus, sim, feed_settings)
        before = counters("binance", "BTC/USDT")
        throttled = rest_metric("binance", "429")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 10, what="trades")
        sim.rest_fail_next("binance", 2, status=429, retry_after_s=1)
        skipped = await skip_and_reveal(sim, tap, "binance", "BTC/USDT", 5)
        await feeds.settle(tap, feed, sim, "binance", ["BTC/USDT"])

        feeds.assert_tape_exact(tap, sim.tape("binance", "BTC/USDT"), "BTC/USDT")
        requests = sim.rest_requests("binance")
        assert [r.status for r in requests[:3]] == [429, 429, 200]
        assert requests[2].at - requests[0].at >= 1.9  # Retry-After: 1, twice
        assert rest_metric("binance", "429") == throttled + 2
        assert deltas(before, "binance", "BTC/USDT") == {"gaps": 1, "trades_backfilled": len(skipped),
                                                         "trades_unrecoverable": 0}


async def test_kraken_throttle_body_and_a_server_error_are_retried(feed_settings, bus, taps, backfilling,
                                                                   running) -> None:
    async with Simulator(SimulatorSettings(trades_per_second=40, seed=4), {"kraken": ["ETH/USD"]},
                         options=FAST) as sim:
        tap = taps("kraken")
        feed = backfilling("kraken", ["ETH/USD"], bus, sim, feed_settings)
        throttled = rest_metric("kraken", "throttled")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 60, what="trades")
        sim.rest_fail_next("kraken", 1, status=200)  # HTTP 200, {"error":["EGeneral:Too many requests"]}
        sim.rest_fail_next("kraken", 1, status=503, retry_after_s=None)
        skipped = await skip_and_reveal(sim, tap, "kraken", "ETH/USD", 4)
        await feeds.settle(tap, feed, sim, "kraken", ["ETH/USD"])

        feeds.assert_tape_exact(tap, sim.tape("kraken", "ETH/USD"), "ETH/USD")
        assert [r.status for r in sim.rest_requests("kraken")[:3]] == [200, 503, 200]
        assert rest_metric("kraken", "throttled") == throttled + 1
        rest, socket = feeds.rest_trade_ids(tap, "ETH/USD")
        assert rest - socket == set(skipped)


async def test_a_long_gap_is_paged(feed_settings, bus, taps, backfilling, running) -> None:
    async with Simulator(SimulatorSettings(trades_per_second=150, seed=8), {"binance": ["BTC/USDT"]},
                         options=FAST) as sim:
        tap = taps("binance")
        feed = backfilling("binance", ["BTC/USDT"], bus, sim, feed_settings, page_size=40)
        before = counters("binance", "BTC/USDT")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 10, what="trades")
        skipped = await skip_and_reveal(sim, tap, "binance", "BTC/USDT", 130)
        await feeds.settle(tap, feed, sim, "binance", ["BTC/USDT"])

        feeds.assert_tape_exact(tap, sim.tape("binance", "BTC/USDT"), "BTC/USDT")
        pages = [r for r in tap.raws() if "-rest-" in r.conn_id]
        assert len({p.conn_id for p in pages}) == 1 and [p.frame_seq for p in pages] == [1, 2, 3, 4]
        assert [p.trade_count for p in pages] == [40, 40, 40, 10]  # the last page reaches past the gap
        assert all(isinstance(json.loads(p.payload), list) and p.error == "" for p in pages)  # bodies as received
        assert deltas(before, "binance", "BTC/USDT") == {"gaps": 1, "trades_backfilled": 130,
                                                         "trades_unrecoverable": 0}
        assert sorted(skipped) == sorted(t.trade_id for t in tap.trades() if "-rest-" in t.conn_id)
        feeds.assert_frames_well_formed(tap)


@pytest.mark.parametrize(("exchange", "symbol"), [("binance", "BTC/USDT"), ("kraken", "BTC/USD"),
                                                  ("coinbase", "ETH/USD")])
async def test_resume_backfills_the_downtime(exchange: str, symbol: str, feed_settings, bus, taps, backfilling,
                                             running) -> None:
    options = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05, history_trades=300)
    async with Simulator(SimulatorSettings(trades_per_second=60, seed=9), {exchange: [symbol]},
                         options=options) as sim:
        tape = sim.tape(exchange, symbol)
        stored = tape[100]  # what the warehouse held when ticklake stopped
        resume = {(exchange, to_native(exchange, symbol)): ResumePoint(stored.trade_id, stored.ts_us)}
        tap = taps(exchange)
        feed = backfilling(exchange, [symbol], bus, sim, feed_settings, page_size=60, resume=resume)
        before = counters(exchange, symbol)
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 250, what="the downtime and live trades")
        await feeds.settle(tap, feed, sim, exchange, [symbol])

        feeds.assert_tape_exact(tap, sim.tape(exchange, symbol), symbol, start_id=stored.trade_id + 1)
        rest, socket = feeds.rest_trade_ids(tap, symbol)
        first_live = min(socket)
        assert rest - socket == set(range(stored.trade_id + 1, first_live))
        assert deltas(before, exchange, symbol) == {"gaps": 1, "trades_backfilled": first_live - stored.trade_id - 1,
                                                    "trades_unrecoverable": 0}
        feeds.assert_frames_well_formed(tap)


@pytest.mark.parametrize(("exchange", "symbol"), [("binance", "BTC/USDT"), ("kraken", "BTC/USD"),
                                                  ("coinbase", "ETH/USD")])
async def test_a_short_look_back_counts_the_unrecoverable_trades_exactly(
        exchange: str, symbol: str, bus, taps, backfilling, running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    options = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05, history_trades=360)
    lookback_s = 2.5
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.4, backfill_lookback_s=lookback_s)
    async with Simulator(SimulatorSettings(trades_per_second=60, seed=12), {exchange: [symbol]},
                         options=options) as sim:
        tape = sim.tape(exchange, symbol)  # about 6 s of trades before the start
        stored = tape[20]
        resume = {(exchange, to_native(exchange, symbol)): ResumePoint(stored.trade_id, stored.ts_us)}
        tap = taps(exchange)
        feed = backfilling(exchange, [symbol], bus, sim, settings, page_size=50, resume=resume)
        before = counters(exchange, symbol)
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 100, what="trades")
        await feeds.settle(tap, feed, sim, exchange, [symbol])

        tape = sim.tape(exchange, symbol)
        _, socket = feeds.rest_trade_ids(tap, symbol)
        revealing = next(t for t in tape if t.trade_id == min(socket))  # the first live trade showed the gap
        cutoff = revealing.ts_us - int(lookback_s * 1_000_000)
        gap = [t for t in tape if stored.trade_id < t.trade_id < revealing.trade_id]
        too_old = {t.trade_id for t in gap if t.ts_us < cutoff}
        assert 50 < len(too_old) < len(gap) - 50  # the look-back cuts the gap in two real parts
        feeds.assert_tape_exact(tap, tape, symbol, start_id=stored.trade_id + 1, excluded=too_old)
        assert deltas(before, exchange, symbol) == {"gaps": 1, "trades_backfilled": len(gap) - len(too_old),
                                                    "trades_unrecoverable": len(too_old)}
        lines = [r.getMessage() for r in caplog.records if "cannot be recovered" in r.getMessage()]
        low, high = min(too_old), max(too_old)
        assert lines == [f"{exchange} {symbol}: {len(too_old)} trades cannot be recovered (ids {low}..{high}): "
                         "older than the look-back, or not served by the venue"]


async def test_run_feeds_resumes_every_venue_from_settings(bus, taps, tmp_path) -> None:
    venues = {"binance": "BTC/USDT", "kraken": "BTC/USD", "coinbase": "ETH/USD"}
    configured = Settings(
        data_dir=tmp_path,
        venues=VenuesSettings(**{name: VenueSettings(symbols=[symbol]) for name, symbol in venues.items()}),
        feed=FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.5),
        simulator=SimulatorSettings(seed=5, trades_per_second=30),
    )
    options = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05, history_trades=150)
    async with Simulator.from_settings(configured, options=options) as sim:
        settings = sim.settings_for(configured)
        assert settings.venues.binance.rest_url == sim.rest_urls["binance"]
        stored = {name: sim.tape(name, symbol)[60] for name, symbol in venues.items()}
        resume = {(name, to_native(name, venues[name])): ResumePoint(t.trade_id, t.ts_us) for name, t in stored.items()}
        tapped = {name: taps(name) for name in venues}
        feed_set = await run_feeds(settings, bus, resume=resume)
        try:
            for name, tap in tapped.items():
                await tap.wait_for(lambda t=tap: len(t.trades()) > 100, timeout=8, what=f"{name} trades")
            for name, symbol in venues.items():
                await feeds.settle(tapped[name], feed_set.feeds[name], sim, name, [symbol])
                feeds.assert_tape_exact(tapped[name], sim.tape(name, symbol), symbol,
                                        start_id=stored[name].trade_id + 1)
        finally:
            await asyncio.wait_for(feed_set.stop(), 5)
        assert feed_set.rest is not None and feed_set.rest._http.is_closed


async def test_a_feed_on_a_foreign_websocket_without_rest_url_does_not_backfill(feed_settings, bus, taps,
                                                                                 running) -> None:
    """Backfilling a simulated tape from the real venue would mix two tapes: gaps are counted instead."""
    from ticklake.exchanges.feeds import feed_for

    async with Simulator(SimulatorSettings(trades_per_second=40, seed=6), {"coinbase": ["BTC/USD"]},
                         options=FAST) as sim:
        tap = taps("coinbase")
        feed = feed_for("coinbase", ["BTC/USD"], bus, feed_settings, sim.ws_urls["coinbase"])
        assert feed.backfill.fetcher is None and feed.backfill.client is None
        before = counters("coinbase", "BTC/USD")
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 60, what="trades")
        skipped = await skip_and_reveal(sim, tap, "coinbase", "BTC/USD", 3)
        await tap.wait_for(lambda: not feed.backfill.busy(), what="the gap to be given up")
        assert deltas(before, "coinbase", "BTC/USD") == {"gaps": 1, "trades_backfilled": 0,
                                                         "trades_unrecoverable": len(skipped)}
        assert sim.rest_requests("coinbase") == []


@pytest.mark.slow
async def test_chaos_on_every_venue_loses_and_doubles_nothing(bus, taps, backfilling, running) -> None:
    """Random faults on all three venues for a while (drops, stalls, skips, repeats, reorders, garbage,
    shutdowns, REST failures); afterwards every tape is on the bus exactly, nothing unrecoverable."""
    markets = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USD"], "coinbase": ["ETH/USD", "BTC/USD"]}
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.5)
    options = VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, batch_interval_s=0.05, snapshot_size=10,
                           shutdown_grace_s=0.3)
    async with Simulator(SimulatorSettings(trades_per_second=40, seed=21), markets, options=options) as sim:
        tapped = {name: taps(name) for name in markets}
        fed = {name: backfilling(name, symbols, bus, sim, settings, page_size=100, stale_timeout_s=0.8)
               for name, symbols in markets.items()}
        before = {(name, s): counters(name, s) for name, symbols in markets.items() for s in symbols}
        for feed in fed.values():
            await running(feed)
        await asyncio.sleep(1.0)
        sim.chaos(seed=21, mean_interval_s=0.25, max_stall_s=1.5)
        started = time.monotonic()
        await asyncio.sleep(12.0)
        await sim.stop_chaos()
        sim.clear_faults()
        await asyncio.sleep(2.0)  # live trades after the last fault reveal what it removed
        assert time.monotonic() - started >= 12.0 and len(sim.fault_log) >= 20
        for name, symbols in markets.items():
            await feeds.settle(tapped[name], fed[name], sim, name, symbols, timeout=30)
        problems = []
        for name, symbols in markets.items():
            for symbol in symbols:
                try:
                    feeds.assert_tape_exact(tapped[name], sim.tape(name, symbol), symbol)
                except AssertionError as exc:
                    problems.append(f"{name} {symbol}: {exc}")
                change = deltas(before[(name, symbol)], name, symbol)
                if change["trades_unrecoverable"]:
                    problems.append(f"{name} {symbol}: {change}")
        assert not problems, "\n".join(problems + [str(e) for e in sim.fault_log])


@pytest.mark.parametrize(("exchange", "symbol", "limit"), [
    ("binance", "BTC/USDT", RestLimit(weight_per_window=100, window_s=1.0)),  # four historicalTrades a second
    ("kraken", "BTC/USD", RestLimit(per_second=3.0, burst=2)),  # answers EGeneral:Too many requests beyond
])
async def test_a_venue_stricter_than_our_budget_is_obeyed_not_banned(exchange: str, symbol: str, limit: RestLimit,
                                                                    feed_settings, bus, taps, backfilling,
                                                                    running) -> None:
    async with Simulator(SimulatorSettings(trades_per_second=150, seed=13), {exchange: [symbol]},
                         options=VenueOptions(tick_s=0.01, heartbeat_interval_s=0.1, rest_limit=limit)) as sim:
        tap = taps(exchange)
        feed = backfilling(exchange, [symbol], bus, sim, feed_settings, page_size=20)
        before = counters(exchange, symbol)
        refusal = "429" if exchange == "binance" else "throttled"
        refused = rest_metric(exchange, refusal)
        await running(feed)
        await tap.wait_for(lambda: len(tap.trades()) >= 60, what="trades")
        skipped = await skip_and_reveal(sim, tap, exchange, symbol, 150)  # eight pages of 20
        await feeds.settle(tap, feed, sim, exchange, [symbol], timeout=15)

        feeds.assert_tape_exact(tap, sim.tape(exchange, symbol), symbol)
        statuses = [r.status for r in sim.rest_requests(exchange)]
        assert 418 not in statuses  # backed off after each refusal: never banned
        assert deltas(before, exchange, symbol)["trades_backfilled"] == len(skipped)
        assert rest_metric(exchange, refusal) > refused  # the venue did refuse some, and the client waited
