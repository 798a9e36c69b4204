"""``Backfill.catch_up``: the most recent page after a break, for a venue whose ids do not count a
market's trades; a break the page cannot reach back across is counted, never guessed at."""

from __future__ import annotations

import asyncio

from ticklake.exchanges.backfill import Backfill
from ticklake.exchanges.gaps import GapTracker
from ticklake.exchanges.rest import FrameStamp, RestClient, RestError, TradePage
from ticklake.model import Message, RawFrame, Trade
from ticklake.ops.metrics import REGISTRY

NATIVE = "BTCUSDT"
SHORT = "ticklake_feed_backfill_short_total"


def short(symbol: str = "BTC/USDT") -> float:
    return REGISTRY.get_sample_value(SHORT, {"exchange": "bybit", "symbol": symbol}) or 0.0


def trade(trade_id: int, ts_ms: int) -> Trade:
    return Trade("bybit", "BTC/USDT", NATIVE, trade_id, "1", "1", "buy", ts_ms * 1000, 0)


class FakeRecent:
    """A venue serving its newest ``page_size`` trades; ids rise by 7 (other markets trade between)."""

    exchange = "bybit"

    def __init__(self, trades: list[Trade], page_size: int = 5, failures: list[RestError] | None = None) -> None:
        self.trades = trades
        self.page_size = page_size
        self.failures = failures or []
        self.asked = 0

    async def recent(self, client: RestClient, native_symbol: str, stamp: FrameStamp) -> TradePage:
        self.asked += 1
        if self.failures:
            raise self.failures.pop(0)
        return TradePage("[]", 1, stamp.next_frame(), tuple(self.trades[-self.page_size:]))

    def pages(self, client: object, span: object, stamp: object) -> object:  # the TradeFetcher half: unused
        raise AssertionError("a venue without counting ids is never asked by span")


def backfill(fetcher: FakeRecent | None, published: list[Message]) -> Backfill:
    async def publish(messages: list[Message]) -> None:
        published.extend(messages)

    client = object() if fetcher is not None else None
    fill = Backfill("bybit", GapTracker(), publish, fetcher=fetcher, client=client,  # type: ignore[arg-type]
                    lookback_s=10**9, symbols={NATIVE: "BTC/USDT"}, clock_us=lambda: 10**15)
    fill.grace_s = 0.01
    fill.backoff_initial_s = 0.001
    return fill


async def finish(fill: Backfill) -> None:
    while fill.busy():
        await asyncio.sleep(0.005)


async def test_a_page_reaching_the_held_trade_recovers_and_counts_nothing() -> None:
    tape = [trade(7 * i, 1000 + i) for i in range(1, 21)]
    published: list[Message] = []
    fill = backfill(FakeRecent(tape), published)
    before = short()
    fill.catch_up(NATIVE, (tape[-3].trade_id, tape[-3].ts_us), "new connection")
    await finish(fill)
    [raw, *trades] = [m.value for m in published]
    assert isinstance(raw, RawFrame) and raw.source == "rest" and raw.trade_count == 5
    assert [t.trade_id for t in trades] == [t.trade_id for t in tape[-5:]]  # repeats are the warehouse's to drop
    assert short() == before


async def test_a_full_page_newer_than_the_held_trade_is_counted_once() -> None:
    tape = [trade(7 * i, 1000 + i) for i in range(1, 21)]
    published: list[Message] = []
    fill = backfill(FakeRecent(tape), published)
    before = short()
    fill.catch_up(NATIVE, (tape[5].trade_id, tape[5].ts_us), "new connection")  # 14 trades ago: page holds 5
    fill.catch_up(NATIVE, (tape[9].trade_id, tape[9].ts_us), "unreadable frame")  # coalesced: the older counts
    await finish(fill)
    assert short() == before + 1
    assert len([m for m in published if isinstance(m.value, RawFrame)]) == 1


async def test_a_short_page_is_the_whole_history_and_nothing_held_is_nothing_lost() -> None:
    tape = [trade(7 * i, 1000 + i) for i in range(1, 4)]
    published: list[Message] = []
    fetcher = FakeRecent(tape, page_size=5)
    fill = backfill(fetcher, published)
    before = short()
    fill.catch_up(NATIVE, (1, 1), "new connection")  # the venue has only 3 trades: all of them came
    await finish(fill)
    fill.catch_up(NATIVE, None, "new connection")  # the first start, nothing stored
    await finish(fill)
    assert short() == before and fetcher.asked == 2


async def test_without_rest_or_with_rest_refusing_the_break_is_counted() -> None:
    before = short()
    published: list[Message] = []
    fill = backfill(None, published)
    fill.catch_up(NATIVE, (7, 1_000_000), "new connection")
    await finish(fill)
    assert short() == before + 1 and not published

    failing = FakeRecent([trade(7, 1000)], failures=[RestError("HTTP 503", retryable=True),
                                                     RestError("retCode 10001", retryable=False)])
    fill = backfill(failing, published)
    fill.catch_up(NATIVE, (7, 1_000_000), "new connection")
    await finish(fill)
    assert short() == before + 2 and failing.asked == 2 and not published
