"""The Bitfinex ``since`` fetcher against the simulated ``/v2/trades/{symbol}/hist``: every trade of a window
from a time on, oldest first, over several pages; a page full of one millisecond; the venue's errors."""

from __future__ import annotations

import pytest

from tests.backfill.conftest import rest_client
from tests.feeds.conftest import key
from ticklake.exchanges.rest import RestClient, RestError, Span
from ticklake.model import Trade
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, TapeTrade, VenueOptions
from ticklake.simulator.rest import RestLimit
from ticklake.venues.bitfinex.rest import MAX_PAGE, BitfinexTrades

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USD"
NATIVE = "tBTCUSD"


class Stamp:
    conn_id = "test-rest-1"

    def __init__(self) -> None:
        self.frames = 0

    def next_frame(self) -> int:
        self.frames += 1
        return self.frames


async def since(client: RestClient, start_us: int, page_size: int) -> tuple[list[Trade], int]:
    """What the backfill keeps of ``since``: trades from ``start_us`` on, deduplicated by id; and the pages."""
    stamp = Stamp()
    found: dict[int, Trade] = {}
    async for page in BitfinexTrades(page_size).since(client, NATIVE, start_us, stamp):
        assert page.frame_seq == stamp.frames
        assert [(t.ts_us, t.trade_id) for t in page.trades] == sorted((t.ts_us, t.trade_id) for t in page.trades)
        for trade in page.trades:
            if trade.ts_us >= start_us:
                found.setdefault(trade.trade_id, trade)
    return sorted(found.values(), key=lambda t: (t.ts_us, t.trade_id)), stamp.frames


@pytest.fixture
async def sim() -> Simulator:
    simulator = Simulator(SimulatorSettings(trades_per_second=50, seed=3), {"bitfinex": [SYMBOL]},
                          options=VenueOptions(history_trades=400, rest_limit=RestLimit(per_second=100, burst=100)))
    await simulator.start()
    simulator.pause()  # a still tape: the oracle does not move under the test
    yield simulator  # type: ignore[misc]
    await simulator.close()


def tape_from(tape: list[TapeTrade], start_us: int) -> list[tuple[int, str, str, str, int]]:
    return [key(t) for t in tape if t.ts_us >= start_us]


async def test_since_over_several_pages_is_exactly_the_tape_from_then(sim: Simulator,
                                                                    rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("bitfinex", SYMBOL)
    assert len(tape) >= 300
    start_us = tape[40].ts_us
    trades, pages = await since(client, start_us, page_size=50)
    assert [key(t) for t in trades] == tape_from(tape, start_us)
    assert pages >= 6
    assert all(t.symbol == SYMBOL and t.native_symbol == NATIVE for t in trades)
    queries = [r.query for r in sim.rest_requests("bitfinex")]
    assert all("sort=1" in q and "limit=50" in q for q in queries)


async def test_one_page_when_everything_fits(sim: Simulator, rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("bitfinex", SYMBOL)
    trades, pages = await since(client, tape[0].ts_us, page_size=MAX_PAGE)
    assert [key(t) for t in trades] == [key(t) for t in tape] and pages == 1
    later, _ = await since(client, tape[-1].ts_us + 1000, page_size=MAX_PAGE)
    assert later == []  # nothing after the newest trade yet


async def test_a_page_full_of_one_millisecond_is_not_a_loop(sim: Simulator, rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("bitfinex", SYMBOL)
    by_ms: dict[int, list[TapeTrade]] = {}
    for trade in tape:
        by_ms.setdefault(trade.ts_us // 1000, []).append(trade)
    crowded = max((ms for ms in by_ms if ms > tape[0].ts_us // 1000), key=lambda ms: len(by_ms[ms]))
    assert len(by_ms[crowded]) >= 2  # bursts share a millisecond
    # Pages smaller than that millisecond: time alone cannot page through it.
    trades, _ = await since(client, crowded * 1000, page_size=len(by_ms[crowded]) - 1)
    assert [key(t) for t in trades] == tape_from(tape, crowded * 1000)
    assert any("end=" in r.query for r in sim.rest_requests("bitfinex"))


async def test_reach_is_the_whole_history_and_pages_serves_a_span(sim: Simulator,
                                                                 rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    assert BitfinexTrades.reach_s is None and BitfinexTrades(50_000).page_size == MAX_PAGE
    tape = sim.tape("bitfinex", SYMBOL)
    span = Span(NATIVE, tape[100].trade_id, tape[180].trade_id, tape[99].ts_us, 0, tape[181].ts_us)
    found = {t.trade_id: t for page in [p async for p in BitfinexTrades(30).pages(client, span, Stamp())]
             for t in page.trades if span.first <= t.trade_id <= span.last}
    assert [key(found[i]) for i in sorted(found)] == [key(t) for t in tape[100:181]]


async def test_errors_of_the_venue(sim: Simulator, rest_clients: list[RestClient]) -> None:
    client = rest_client(sim, max_attempts=2)
    rest_clients.append(client)
    with pytest.raises(RestError, match="symbol: invalid"):
        async for _ in BitfinexTrades(10).since(client, "tNOPEUSD", 0, Stamp()):
            pass
    sim.rest_fail_next("bitfinex", 1, status=429)  # ["error",11010,"ratelimit: error"]: waited out
    tape = sim.tape("bitfinex", SYMBOL)
    trades, _ = await since(client, tape[-5].ts_us, page_size=MAX_PAGE)
    assert [key(t) for t in trades] == tape_from(tape, tape[-5].ts_us)
    assert [r.status for r in sim.rest_requests("bitfinex")][-2:] == [429, 200]
