"""Reconciliation by time (``Backfill.catch_up`` with a ``WindowTradeFetcher``), for venues whose trade ids
are global: a break's window is read back from REST and only the trades not held yet are published; a
window older than the venue's REST reach, or one REST keeps refusing, is counted, never guessed at.
End to end against the simulated venues: tests/test_reconciled_e2e.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ticklake.exchanges.backfill import RECONCILE_OVERLAP_S, Backfill
from ticklake.exchanges.feeds.frames import FrameHandler
from ticklake.exchanges.gaps import GapTracker, SeenTrades
from ticklake.exchanges.rest import FrameStamp, RestClient, RestError, TradePage
from ticklake.model import Message, ParsedFrame, RawFrame, Trade
from ticklake.ops.metrics import REGISTRY

NATIVE = "tBTCUSD"
NOW_US = 10**15
OVERLAP_US = int(RECONCILE_OVERLAP_S * 1_000_000)  # a window starts this much before the point asked


def metric(name: str, symbol: str = "BTC/USD") -> float:
    return REGISTRY.get_sample_value(name, {"exchange": "bitfinex", "symbol": symbol}) or 0.0


def trade(trade_id: int, ts_us: int) -> Trade:
    return Trade("bitfinex", "BTC/USD", NATIVE, trade_id, "1", "1", "buy", ts_us, 0)


class FakeWindow:
    """A venue serving a market's trades from a time on, ``page_size`` a page, the next page starting at the
    last page's newest time (so the trades of that moment come twice, as Bitfinex's ``start`` does)."""

    exchange = "bitfinex"

    def __init__(self, tape: list[Trade], page_size: int = 4, reach_s: float | None = None,
                 failures: list[RestError] | None = None) -> None:
        self.tape = sorted(tape, key=lambda t: (t.ts_us, t.trade_id))
        self.page_size = page_size
        self.reach_s = reach_s
        self.failures = failures or []
        self.starts: list[int] = []

    async def since(self, client: RestClient, native_symbol: str, start_us: int,
                    stamp: FrameStamp) -> AsyncIterator[TradePage]:
        self.starts.append(start_us)
        if self.failures:
            raise self.failures.pop(0)
        start = start_us
        while True:
            page = tuple(t for t in self.tape if t.ts_us >= start)[:self.page_size]
            yield TradePage("[]", NOW_US, stamp.next_frame(), page)
            if len(page) < self.page_size:
                return
            start = page[-1].ts_us

    def pages(self, client: object, span: object, stamp: object) -> object:  # the TradeFetcher half: unused
        raise AssertionError("a venue reconciled by time is never asked by span")


def backfill(fetcher: FakeWindow | None, published: list[Message], seen: SeenTrades | None = None,
             lookback_s: float = 10**6) -> Backfill:
    async def publish(messages: list[Message]) -> None:
        published.extend(messages)

    client = object() if fetcher is not None else None
    fill = Backfill("bitfinex", GapTracker(), publish, fetcher=fetcher, client=client,  # type: ignore[arg-type]
                    lookback_s=lookback_s, symbols={NATIVE: "BTC/USD"}, clock_us=lambda: NOW_US,
                    seen=seen if seen is not None else SeenTrades(10**12))
    fill.grace_s = 0.01
    fill.backoff_initial_s = 0.001
    return fill


async def finish(fill: Backfill) -> None:
    while fill.busy():
        await asyncio.sleep(0.005)


def published_trades(published: list[Message]) -> list[int]:
    return [m.value.trade_id for m in published if isinstance(m.value, Trade)]


# Global ids: the market's trades are 3, 11, 12, 20 ... (other markets took the numbers between), and
# several trades share a moment, across page boundaries.
TAPE = [trade(i, NOW_US - 100_000_000 + (i // 3) * 1_000_000) for i in range(3, 60, 4)]


async def test_a_window_publishes_exactly_what_the_socket_missed_across_pages() -> None:
    seen = SeenTrades(10**12)
    held = TAPE[2]
    delivered = [t for t in TAPE if t.trade_id not in (TAPE[5].trade_id, TAPE[6].trade_id, TAPE[11].trade_id)]
    for t in delivered:
        seen.add(NATIVE, t.trade_id, t.ts_us)
    published: list[Message] = []
    fetcher = FakeWindow(TAPE, page_size=4)
    fill = backfill(fetcher, published, seen)
    filled_before = metric("ticklake_feed_trades_backfilled_total")
    fill.catch_up(NATIVE, (held.trade_id, held.ts_us), "new connection")
    await finish(fill)
    assert published_trades(published) == [TAPE[5].trade_id, TAPE[6].trade_id, TAPE[11].trade_id]
    assert fetcher.starts == [held.ts_us - OVERLAP_US]
    assert len([m for m in published if isinstance(m.value, RawFrame)]) > 3  # every page kept as a raw frame
    assert metric("ticklake_feed_trades_backfilled_total") == filled_before + 3
    # Read back again (the next tick): everything is held now, nothing is published twice.
    published.clear()
    fill.catch_up(NATIVE, (held.trade_id, held.ts_us), "periodic reconciliation", counted=False)
    await finish(fill)
    assert published_trades(published) == []


async def test_trades_older_than_the_window_start_are_not_published() -> None:
    published: list[Message] = []
    fill = backfill(FakeWindow(TAPE), published)
    fill.catch_up(NATIVE, (0, TAPE[-3].ts_us), "new connection")
    await finish(fill)
    start = TAPE[-3].ts_us - OVERLAP_US
    assert published_trades(published) == [t.trade_id for t in TAPE if t.ts_us >= start]
    assert len(published_trades(published)) < len(TAPE)


async def test_a_window_beyond_the_venues_reach_is_counted_and_read_from_the_reach_on() -> None:
    published: list[Message] = []
    fetcher = FakeWindow(TAPE, reach_s=50)  # the venue serves the last 50 s only
    fill = backfill(fetcher, published)
    short_before = metric("ticklake_feed_backfill_short_total")
    fill.catch_up(NATIVE, (TAPE[0].trade_id, TAPE[0].ts_us), "new connection")  # 100 s back
    await finish(fill)
    assert metric("ticklake_feed_backfill_short_total") == short_before + 1
    assert fetcher.starts == [NOW_US - 50_000_000]
    assert published_trades(published) == [t.trade_id for t in TAPE if t.ts_us >= NOW_US - 50_000_000]


async def test_a_window_older_than_the_look_back_is_counted_too() -> None:
    published: list[Message] = []
    fetcher = FakeWindow(TAPE)
    fill = backfill(fetcher, published, lookback_s=30)
    short_before = metric("ticklake_feed_backfill_short_total")
    fill.catch_up(NATIVE, (TAPE[0].trade_id, TAPE[0].ts_us), "new connection")
    await finish(fill)
    assert metric("ticklake_feed_backfill_short_total") == short_before + 1
    assert fetcher.starts == [NOW_US - 30_000_000]


async def test_breaks_waiting_together_are_read_once_from_the_oldest() -> None:
    published: list[Message] = []
    fetcher = FakeWindow(TAPE)
    fill = backfill(fetcher, published)
    gaps_before = metric("ticklake_feed_gaps_total")
    fill.catch_up(NATIVE, (0, TAPE[8].ts_us), "new connection")
    fill.catch_up(NATIVE, (0, TAPE[4].ts_us), "sequence jump")
    fill.catch_up(NATIVE, (0, TAPE[10].ts_us), "periodic reconciliation", counted=False)
    await finish(fill)
    assert fetcher.starts == [TAPE[4].ts_us - OVERLAP_US]
    assert metric("ticklake_feed_gaps_total") == gaps_before + 2  # the periodic tick is not a break


async def test_rest_failing_is_retried_then_a_refusal_is_counted() -> None:
    published: list[Message] = []
    fetcher = FakeWindow(TAPE, failures=[RestError("HTTP 503", retryable=True)])
    fill = backfill(fetcher, published)
    short_before = metric("ticklake_feed_backfill_short_total")
    fill.catch_up(NATIVE, (0, TAPE[-2].ts_us), "new connection")
    await finish(fill)
    start = TAPE[-2].ts_us - OVERLAP_US
    assert len(fetcher.starts) == 2 and published_trades(published) == [t.trade_id for t in TAPE if t.ts_us >= start]
    assert metric("ticklake_feed_backfill_short_total") == short_before

    refusing = FakeWindow(TAPE, failures=[RestError("HTTP 400 symbol: invalid", retryable=False)])
    fill = backfill(refusing, published)
    fill.catch_up(NATIVE, (0, TAPE[-2].ts_us), "new connection")
    await finish(fill)
    assert metric("ticklake_feed_backfill_short_total") == short_before + 1 and len(refusing.starts) == 1


async def test_nothing_held_is_nothing_to_reconcile() -> None:
    published: list[Message] = []
    fetcher = FakeWindow(TAPE)
    fill = backfill(fetcher, published)
    fill.catch_up(NATIVE, None, "new connection")
    await finish(fill)
    assert fetcher.starts == [] and published == []


def test_seen_trades_forget_ids_older_than_their_window() -> None:
    seen = SeenTrades(keep_us=10_000)
    for i in range(5000):
        seen.add("A", i, i * 10)  # 10 µs apart: the window holds the newest ~1,000
    assert seen.holds("A", 4999) and seen.holds("A", 4000)
    assert not seen.holds("A", 10) and not seen.holds("B", 4999)
    assert seen.size("A") <= 2 * 1024


class _Sink:
    async def publish(self, messages: list[Message]) -> None:
        pass


async def test_a_sequence_jump_on_a_connection_is_a_break_of_its_markets() -> None:
    frames = iter([
        ParsedFrame("heartbeat", sequence=1),
        ParsedFrame("trade", (trade(7, 1_000),), sequence=2),
        ParsedFrame("heartbeat", sequence=3),
        ParsedFrame("trade", (trade(9, 2_000),), sequence=6),  # 4 and 5 were lost
        ParsedFrame("heartbeat", sequence=7),
    ])

    def parser(data: object, received_us: int, conn_id: str, frame_seq: int, **_: object) -> ParsedFrame:
        return next(frames)

    seen = SeenTrades(10**12)
    handler = FrameHandler("bitfinex", parser, _Sink(), GapTracker(), {NATIVE: "BTC/USD"}, track_ids=False,
                           seen=seen)
    breaks: list[str] = []
    handler.on_break = lambda natives, why: breaks.append(f"{sorted(natives)} {why}")
    for n in range(5):
        await handler.handle("c1", n + 1, 0, b"[]", subscribed=frozenset({NATIVE}))
    assert breaks == [f"['{NATIVE}'] new connection c1", f"['{NATIVE}'] sequence jump on c1 (3 to 6)"]
    assert seen.holds(NATIVE, 7) and seen.holds(NATIVE, 9)
    assert handler.newest[NATIVE] == (9, 2_000)


async def test_a_window_from_after_the_feeds_start_does_not_reach_before_it() -> None:
    published: list[Message] = []
    fetcher = FakeWindow(TAPE)
    fill = backfill(fetcher, published)
    fill.floor_us = TAPE[6].ts_us  # the feed started here; nothing was stored before
    fill.catch_up(NATIVE, (0, TAPE[6].ts_us), "new connection")  # the start itself: nothing held yet
    await finish(fill)
    assert fetcher.starts == [TAPE[6].ts_us]
    assert published_trades(published) == [t.trade_id for t in TAPE if t.ts_us >= TAPE[6].ts_us]
    # A trade stored before the start (a restart's resume point) reaches back, overlap included.
    fill.catch_up(NATIVE, (TAPE[2].trade_id, TAPE[2].ts_us), "new connection")
    await finish(fill)
    assert fetcher.starts[-1] == TAPE[2].ts_us - OVERLAP_US


async def test_a_trade_rest_dates_to_the_second_before_the_start_is_kept() -> None:
    """Bitstamp's REST dates trades in whole seconds: a trade 0.3 s after the window's start can come dated
    0.7 s before it, and must not be dropped as too old; one dated well before the start is."""
    start = NOW_US - 10_500_000 + OVERLAP_US  # the point asked from; the window starts OVERLAP earlier
    window_start = start - OVERLAP_US
    coarse = [trade(101, window_start // 1_000_000 * 1_000_000),  # 0.5 s after the start, dated to its second
              trade(100, window_start - 3_000_000)]  # truly before the start
    published: list[Message] = []
    fetcher = FakeWindow([])
    fetcher.tape = sorted(coarse, key=lambda t: t.ts_us)

    async def since(client: object, native_symbol: str, start_us: int, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        fetcher.starts.append(start_us)
        yield TradePage("[]", NOW_US, stamp.next_frame(), tuple(fetcher.tape))

    fetcher.since = since  # type: ignore[method-assign]
    fill = backfill(fetcher, published)
    fill.catch_up(NATIVE, (0, start), "new connection")
    await finish(fill)
    assert published_trades(published) == [101]
