"""Fixtures for the feed tests: the simulator on loopback, a MemoryBus tap, running feeds.

Everything runs on short intervals (constructor parameters), so each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ticklake.bus import MemoryBus, Message, raw_topic, trades_topic
from ticklake.exchanges.feeds import RealtimeFeed, feed_for
from ticklake.exchanges.rest import RateLimit, RestClient, fetcher_for
from ticklake.model import RawFrame, Trade
from ticklake.ops.metrics import REGISTRY
from ticklake.settings import FeedSettings
from ticklake.simulator import Simulator, TapeTrade
from ticklake.venues import NAMES


class BusTap:
    """Everything one venue's feed put on the bus, in publish order."""

    def __init__(self, bus: MemoryBus, exchange: str) -> None:
        self.exchange = exchange
        self._bus = bus
        self.messages: list[Message] = []
        self._batches = bus.subscribe([raw_topic(exchange), trades_topic(exchange)], 10_000, 0.005)
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for batch in self._batches:
            self.messages.extend(batch)

    def raws(self) -> list[RawFrame]:
        return [m.value for m in self.messages if isinstance(m.value, RawFrame)]

    def trades(self, symbol: str | None = None) -> list[Trade]:
        return [m.value for m in self.messages
                if isinstance(m.value, Trade) and (symbol is None or m.value.symbol == symbol)]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
            await asyncio.sleep(0.02)

    async def settle(self) -> None:
        """Wait until everything published so far has reached this tap."""
        await self.wait_for(lambda: self._bus.depth() == 0, what="the bus to drain")
        await asyncio.sleep(0.05)  # the last batch's collection window

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._batches.aclose()  # type: ignore[attr-defined]


def key(trade: Trade | TapeTrade) -> tuple[int, str, str, str, int]:
    """What must round-trip exactly: id, price text, quantity text, taker side, exchange time."""
    return (trade.trade_id, trade.price, trade.qty, trade.side, trade.ts_us)


def assert_slice_of_tape(received: list[Trade], tape: list[TapeTrade], *, to_end: bool = True) -> None:
    """``received`` is exactly a contiguous run of the tape (no loss, no duplicate, in order),
    ending at the tape's end when ``to_end``."""
    assert received, "no trades received"
    got = [key(t) for t in received]
    want = [key(t) for t in tape]
    assert got[0] in want, f"first received trade {got[0]} is not on the tape"
    start = want.index(got[0])
    assert got == want[start:start + len(got)], "received trades differ from the tape"
    if to_end:
        assert start + len(got) == len(want), f"missing the last {len(want) - start - len(got)} tape trades"


def assert_frames_well_formed(tap: BusTap) -> None:
    """Each raw frame is followed by exactly its trades; frame_seq is 1, 2, 3 ... per connection."""
    expected_seq: dict[str, int] = {}
    current: RawFrame | None = None
    seen = 0
    for message in tap.messages:
        value = message.value
        if isinstance(value, RawFrame):
            assert current is None or seen == current.trade_count, "a frame's trades are incomplete"
            assert value.frame_seq == expected_seq.get(value.conn_id, 0) + 1, "frame_seq is not contiguous"
            expected_seq[value.conn_id] = value.frame_seq
            current, seen = value, 0
        else:
            assert current is not None, "a trade before any raw frame"
            assert (value.conn_id, value.frame_seq) == (current.conn_id, current.frame_seq)
            assert message.key == (value.symbol or value.native_symbol)
            seen += 1
    assert current is None or seen == current.trade_count


def metric(name: str, exchange: str) -> float:
    return REGISTRY.get_sample_value(name, {"exchange": exchange}) or 0.0


# Test budgets: below each simulated venue's own limit, fast enough for tests of a few seconds; ten a
# second for a venue not named (its tests raise the simulator's limit when that is lower).
FAST_LIMITS = {name: RateLimit(burst=10, per_second=10) for name in NAMES} | {
    "binance": RateLimit(burst=1000, per_second=1000),  # the simulator allows 6000 weight a minute
    "kraken": RateLimit(burst=10, per_second=5),  # the simulator: 15 burst, 1 a second
    "coinbase": RateLimit(burst=10, per_second=10),  # the simulator: 15 burst, 10 a second
    "okx": RateLimit(burst=10, per_second=10),  # the simulator: 20 burst, 10 a second
    "bybit": RateLimit(burst=100, per_second=100),  # the simulator: 600 burst, 120 a second
}


# --- backfill against the simulator's REST servers ----------------------------------------------

def sym_metric(name: str, exchange: str, symbol: str) -> float:
    return REGISTRY.get_sample_value(name, {"exchange": exchange, "symbol": symbol}) or 0.0


def assert_tape_exact(tap: BusTap, tape: list[TapeTrade], symbol: str, start_id: int | None = None,
                      excluded: set[int] | None = None) -> dict[int, Trade]:
    """The trades on the bus, deduplicated by id as the warehouse does, are exactly the tape from
    ``start_id`` (default: the first id received) to its end, minus ``excluded`` ids; every copy of
    one id is identical. Returns the deduplicated trades."""
    by_id: dict[int, Trade] = {}
    for trade in tap.trades(symbol):
        first = by_id.setdefault(trade.trade_id, trade)
        assert key(first) == key(trade), f"two copies of trade {trade.trade_id} differ"
    assert by_id, f"no {symbol} trades received"
    start = min(by_id) if start_id is None else start_id
    skip = excluded or set()
    want = [key(t) for t in tape if t.trade_id >= start and t.trade_id not in skip]
    got = [key(by_id[i]) for i in sorted(by_id) if i >= start]
    missing = sorted({w[0] for w in want} - {g[0] for g in got})
    extra = sorted({g[0] for g in got} - {w[0] for w in want})
    assert got == want, f"{symbol}: missing ids {missing[:20]}, unexpected ids {extra[:20]}"
    return by_id


def rest_trade_ids(tap: BusTap, symbol: str) -> tuple[set[int], set[int]]:
    """(ids that came from REST pages, ids that came from WebSocket frames) of ``symbol``."""
    rest = {t.trade_id for t in tap.trades(symbol) if "-rest-" in t.conn_id}
    socket = {t.trade_id for t in tap.trades(symbol) if "-rest-" not in t.conn_id}
    return rest, socket


async def settle(tap: BusTap, feed: RealtimeFeed, sim: Simulator, exchange: str, symbols: list[str],
                 timeout: float = 10.0) -> None:
    """Stop the venue's tape, then wait until the feed has every trade of it and no backfill runs."""
    sim.pause(exchange)
    for symbol in symbols:
        last = sim.tape(exchange, symbol)[-1].trade_id
        await tap.wait_for(lambda s=symbol, i=last: any(t.trade_id == i for t in tap.trades(s)), timeout,
                           what=f"the last {symbol} trade")
    await tap.wait_for(lambda: not feed.backfill.busy(), timeout, what="backfill to finish")
    await tap.settle()


@pytest.fixture
def feed_settings() -> FeedSettings:
    return FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.4, stable_after_s=30.0, connect_timeout_s=2.0)


@pytest.fixture
async def bus() -> MemoryBus:
    return MemoryBus(maxsize=100_000)


@pytest.fixture
async def taps(bus: MemoryBus) -> AsyncIterator[Callable[[str], BusTap]]:
    opened: list[BusTap] = []

    def open_tap(exchange: str) -> BusTap:
        tap = BusTap(bus, exchange)
        opened.append(tap)
        return tap

    yield open_tap
    for tap in opened:
        await tap.close()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[RealtimeFeed], Awaitable[asyncio.Task[None]]]]:
    """Start ``feed.run()`` in a task; every started feed is stopped at the end of the test."""
    started: list[tuple[RealtimeFeed, asyncio.Task[None]]] = []

    async def start(feed: RealtimeFeed) -> asyncio.Task[None]:
        task = asyncio.create_task(feed.run())
        started.append((feed, task))
        await asyncio.sleep(0)
        return task

    yield start
    for feed, task in started:
        await feed.stop()
        await asyncio.wait_for(task, 5)


class Helpers:
    """The module-level helpers, handed to tests by the ``helpers`` fixture."""

    assert_slice_of_tape = staticmethod(assert_slice_of_tape)
    assert_frames_well_formed = staticmethod(assert_frames_well_formed)
    metric = staticmethod(metric)
    key = staticmethod(key)
    sym_metric = staticmethod(sym_metric)
    assert_tape_exact = staticmethod(assert_tape_exact)
    rest_trade_ids = staticmethod(rest_trade_ids)
    settle = staticmethod(settle)


@pytest.fixture
def helpers() -> type[Helpers]:
    return Helpers


@pytest.fixture
async def backfilling() -> AsyncIterator[Callable[..., RealtimeFeed]]:
    """``backfilling(exchange, symbols, bus, sim, settings, page_size=None, **kwargs)``: a feed on the
    simulator that backfills from its REST server, through a client with test-sized rate limits."""
    clients: list[RestClient] = []

    def make(exchange: str, symbols: list[str], bus: MemoryBus, sim: Simulator, settings: FeedSettings,
             page_size: int | None = None, **kwargs: Any) -> RealtimeFeed:
        client = RestClient(settings, urls=sim.rest_urls, limits=FAST_LIMITS, backoff_initial_s=0.05,
                            backoff_max_s=0.5)
        clients.append(client)
        fetcher = fetcher_for(exchange, page_size) if page_size else None
        return feed_for(exchange, symbols, bus, settings, sim.ws_urls[exchange], rest=client,
                        rest_url=sim.rest_urls[exchange], fetcher=fetcher, **kwargs)

    yield make
    for client in clients:
        await client.aclose()

