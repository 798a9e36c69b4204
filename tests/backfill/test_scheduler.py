"""The backfill scheduler with a fake venue: merging, one task per market, retries, giving up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from ticklake.exchanges.backfill import Backfill
from ticklake.exchanges.gaps import Gap, GapTracker
from ticklake.exchanges.rest import FrameStamp, RestClient, RestError, Span, TradePage
from ticklake.model import Message, RawFrame, Trade
from ticklake.ops.metrics import REGISTRY

SYMBOLS = {"AAAUSDT": "AAA/USDT", "BBBUSDT": "BBB/USDT"}
START_US = time.time_ns() // 1000 - 60_000_000  # a minute ago: well inside the look-back


def trade(native: str, trade_id: int, conn_id: str = "ws", frame_seq: int = 0) -> Trade:
    return Trade("binance", SYMBOLS.get(native, ""), native, trade_id, "1.5", "2", "buy",
                 START_US + trade_id * 1000, 0, conn_id, frame_seq)


class FakeVenue:
    """Serves every id; can fail the next requests; records spans and concurrency."""

    exchange = "binance"
    page_size = 3

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.failures: list[RestError] = []
        self.active: dict[str, int] = {}
        self.most_active = 0
        self.lagging: list[int] = []  # for the next requests: the newest id the venue serves yet

    async def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        self.spans.append(span)
        native = span.native_symbol
        self.active[native] = self.active.get(native, 0) + 1
        self.most_active = max(self.most_active, self.active[native])
        newest = self.lagging.pop(0) if self.lagging else None
        try:
            for start in range(span.first, span.last + 1, self.page_size):
                await asyncio.sleep(0.01)
                if self.failures:
                    raise self.failures.pop(0)
                seq = stamp.next_frame()
                rows = tuple(trade(native, i, stamp.conn_id, seq) for i in range(start - 1, start + self.page_size)
                             if newest is None or i <= newest)
                yield TradePage(f"page {start}", 1, seq, rows)
                if newest is not None and start + self.page_size > newest:
                    return
        finally:
            self.active[native] -= 1


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def publish(self, messages: list[Message]) -> None:
        self.messages.extend(messages)


def metric(name: str, symbol: str) -> float:
    return REGISTRY.get_sample_value(f"ticklake_feed_{name}_total", {"exchange": "binance", "symbol": symbol}) or 0.0


def make(tracker: GapTracker, venue: FakeVenue | None, sink: Sink) -> Backfill:
    backfill = Backfill("binance", tracker, sink.publish, fetcher=venue, client=object() if venue else None,  # type: ignore[arg-type]
                        lookback_s=3600, symbols=SYMBOLS)
    backfill.grace_s = 0.05
    backfill.backoff_initial_s = 0.01
    return backfill


async def wait_idle(backfill: Backfill) -> None:
    for _ in range(500):
        if not backfill.busy():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("backfill still busy")


async def test_touching_gaps_are_merged_and_fetched_once() -> None:
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    # Gaps 2..4, 6..8 (one id apart: they touch, pages are 3), 13..29 (four ids apart: they do not).
    for trade_id in (1, 5, 9, 10, 11, 12, 30):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    await wait_idle(backfill)
    assert [(s.first, s.last) for s in venue.spans] == [(2, 8), (13, 29)]
    assert tracker.missing("AAAUSDT") == 0
    published = [m.value for m in sink.messages]
    raws = [v for v in published if isinstance(v, RawFrame)]
    assert [r.frame_seq for r in raws] == list(range(1, len(raws) + 1))  # one REST "connection" per run
    assert len({r.conn_id for r in raws}) == 1 and raws[0].conn_id.startswith("binance-rest-")
    ids = [v.trade_id for v in published if isinstance(v, Trade)]
    assert sorted(set(ids)) == [*range(2, 9), *range(13, 30)]  # only ids inside the spans are published


async def test_one_task_per_market_markets_in_parallel() -> None:
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    for native in SYMBOLS:
        for trade_id in (1, 10, 11, 12, 13, 14, 30):  # gaps 2..9 and 15..29, five ids apart: two spans
            for gap in tracker.observe((trade(native, trade_id),)) or []:
                backfill.add(gap)
    await asyncio.sleep(0.02)
    assert set(backfill._tasks) == set(SYMBOLS)
    await wait_idle(backfill)
    assert venue.most_active == 1 and len(venue.spans) == 4


async def test_a_late_socket_trade_inside_the_grace_period_saves_the_request() -> None:
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    for trade_id in (1, 3):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    tracker.observe((trade("AAAUSDT", 2),))  # the reordered frame arrives
    await wait_idle(backfill)
    assert venue.spans == [] and sink.messages == []


async def test_failures_are_retried_with_backoff_and_only_the_rest_is_fetched_again() -> None:
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    filled = metric("trades_backfilled", "AAA/USDT")
    for trade_id in (1, 11):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    await asyncio.sleep(0.08)  # into the first page
    venue.failures = [RestError("HTTP 503", retryable=True), RestError("timed out", retryable=True)]
    await wait_idle(backfill)
    assert tracker.missing("AAAUSDT") == 0
    assert len(venue.spans) == 3 and venue.spans[0].first == 2
    assert venue.spans[-1].first > 2  # a retry starts at what is still missing
    assert metric("trades_backfilled", "AAA/USDT") == filled + 9


async def test_a_refused_request_makes_the_gap_unrecoverable_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    lost = metric("trades_unrecoverable", "BBB/USDT")
    venue.failures = [RestError("HTTP 400: Invalid symbol.", retryable=False)]
    for trade_id in (1, 6):
        for gap in tracker.observe((trade("BBBUSDT", trade_id),)) or []:
            backfill.add(gap)
    await wait_idle(backfill)
    assert metric("trades_unrecoverable", "BBB/USDT") == lost + 4
    assert tracker.missing("BBBUSDT") == 0  # given up: no longer pending
    assert "binance BBB/USDT: 4 trades cannot be recovered (ids 2..5): HTTP 400: Invalid symbol." in caplog.text


async def test_without_a_rest_api_gaps_are_counted_and_given_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticklake.feeds")
    tracker, sink = GapTracker(), Sink()
    backfill = make(tracker, None, sink)
    gaps, lost = metric("gaps", "AAA/USDT"), metric("trades_unrecoverable", "AAA/USDT")
    for trade_id in (1, 4):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    await wait_idle(backfill)
    assert (metric("gaps", "AAA/USDT"), metric("trades_unrecoverable", "AAA/USDT")) == (gaps + 1, lost + 2)
    assert "no REST API configured for this feed" in caplog.text and sink.messages == []


async def test_close_cancels_running_backfills() -> None:
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    for trade_id in (1, 1000):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    await asyncio.sleep(0.1)
    assert backfill.busy()
    await backfill.close()
    assert not backfill.busy()


async def test_a_venue_lagging_its_stream_is_asked_again() -> None:
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    lost = metric("trades_unrecoverable", "AAA/USDT")
    venue.lagging = [4, 7]  # serves ids up to 4, then up to 7, then everything
    for trade_id in (1, 11):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    await wait_idle(backfill)
    assert [(s.first, s.last) for s in venue.spans] == [(2, 10), (5, 10), (8, 10)]
    assert tracker.missing("AAAUSDT") == 0 and metric("trades_unrecoverable", "AAA/USDT") == lost


async def test_a_venue_that_never_catches_up_loses_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    backfill.max_behind = 2
    lost = metric("trades_unrecoverable", "AAA/USDT")
    venue.lagging = [6, 6, 6, 6]
    for trade_id in (1, 11):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    await wait_idle(backfill)
    assert len(venue.spans) == 3  # the first ask, then max_behind more
    assert metric("trades_unrecoverable", "AAA/USDT") == lost + 4
    assert "4 trades cannot be recovered (ids 7..10): the venue's REST API serves ids only up to 6" in caplog.text


async def test_ids_found_missing_again_during_a_fetch_are_fetched_again_not_given_up() -> None:
    """A broker or warehouse check reopens ids that a running fetch already filled (they were lost
    after publishing): the fetch must go over them again when it ends, not call them unrecoverable."""
    tracker, venue, sink = GapTracker(), FakeVenue(), Sink()
    backfill = make(tracker, venue, sink)
    for trade_id in (1, 30):
        for gap in tracker.observe((trade("AAAUSDT", trade_id),)) or []:
            backfill.add(gap)
    before = metric("trades_unrecoverable", "AAA/USDT")
    # Once ids 2..4 were published, they are found missing again (lost after the publish).
    while not any(isinstance(m.value, Trade) and m.value.trade_id == 4 for m in sink.messages):
        await asyncio.sleep(0.005)
    assert backfill.refill(Gap("AAAUSDT", 2, 4, START_US, START_US + 5000), "the broker") == 3
    await wait_idle(backfill)
    assert tracker.missing("AAAUSDT") == 0
    assert metric("trades_unrecoverable", "AAA/USDT") == before
    fetched = [m.value.trade_id for m in sink.messages if isinstance(m.value, Trade)]
    assert sorted(set(fetched)) == list(range(2, 30)) and fetched.count(3) == 2  # 2..4 fetched twice
