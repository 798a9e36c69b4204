"""Each venue's REST fetcher against the simulator's REST server: spans, pages, the look-back."""

from __future__ import annotations

import pytest

from tests.backfill.conftest import rest_client
from tests.feeds.conftest import key
from ticklake.exchanges.rest import RestClient, Span, fetcher_for
from ticklake.model import Trade
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator, TapeTrade, VenueOptions
from ticklake.venues import to_native

MARKETS = {"binance": "BTC/USDT", "kraken": "BTC/USD", "coinbase": "ETH/USD", "okx": "BTC/USDT"}


class Stamp:
    conn_id = "test-rest-1"

    def __init__(self) -> None:
        self.frames = 0

    def next_frame(self) -> int:
        self.frames += 1
        return self.frames


async def fetch(client: RestClient, exchange: str, span: Span, page_size: int) -> tuple[list[Trade], int]:
    """The trades of the span from the venue's pages (dedup by id, sorted), and how many pages."""
    stamp = Stamp()
    found: dict[int, Trade] = {}
    async for page in fetcher_for(exchange, page_size).pages(client, span, stamp):
        assert page.frame_seq == stamp.frames
        assert all(t.conn_id == stamp.conn_id and t.frame_seq == page.frame_seq for t in page.trades)
        assert [t.trade_id for t in page.trades] == sorted(t.trade_id for t in page.trades)
        for trade in page.trades:
            if span.first <= trade.trade_id <= span.last and trade.ts_us >= span.cutoff_us:
                found[trade.trade_id] = trade
    return [found[i] for i in sorted(found)], stamp.frames


def span_of(exchange: str, tape: list[TapeTrade], first: int, last: int, cutoff_us: int = 0) -> Span:
    before = tape[first - 1]
    after = tape[last + 1]
    return Span(to_native(exchange, MARKETS[exchange]), before.trade_id + 1, after.trade_id - 1, before.ts_us,
                cutoff_us, after.ts_us)


@pytest.fixture
async def sim() -> Simulator:
    simulator = Simulator(SimulatorSettings(trades_per_second=50, seed=3), {ex: [s] for ex, s in MARKETS.items()},
                          options=VenueOptions(history_trades=400))
    await simulator.start()
    simulator.pause()  # a still tape: the oracle does not move under the test
    yield simulator  # type: ignore[misc]
    await simulator.close()


@pytest.mark.parametrize("exchange", sorted(MARKETS))
async def test_a_span_over_several_pages_comes_back_exactly(sim: Simulator, rest_clients: list[RestClient],
                                                            exchange: str) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape(exchange, MARKETS[exchange])
    assert len(tape) >= 300
    span = span_of(exchange, tape, 40, 259)  # 220 trades, pages of 50
    trades, pages = await fetch(client, exchange, span, page_size=50)
    assert [key(t) for t in trades] == [key(t) for t in tape[40:260]]
    assert pages >= 5
    assert all(t.symbol == MARKETS[exchange] and t.native_symbol == span.native_symbol for t in trades)


@pytest.mark.parametrize("exchange", sorted(MARKETS))
async def test_the_look_back_is_a_hard_boundary(sim: Simulator, rest_clients: list[RestClient],
                                                exchange: str) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape(exchange, MARKETS[exchange])
    cutoff = tape[200].ts_us
    span = span_of(exchange, tape, 10, 289, cutoff_us=cutoff)
    trades, _ = await fetch(client, exchange, span, page_size=40)
    assert [key(t) for t in trades] == [key(t) for t in tape[10:290] if t.ts_us >= cutoff]


async def test_binance_finds_the_look_back_by_bisection_not_by_paging(sim: Simulator,
                                                                      rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("binance", "BTC/USDT")
    cutoff = tape[350].ts_us
    span = span_of("binance", tape, 1, 379, cutoff_us=cutoff)
    before = len(sim.rest_requests("binance"))
    trades, pages = await fetch(client, "binance", span, page_size=50)
    assert [key(t) for t in trades] == [key(t) for t in tape[1:380] if t.ts_us >= cutoff]
    probes = len(sim.rest_requests("binance")) - before - pages
    assert pages == 1 and 0 < probes <= 10  # log2(379) probes, one page: not eight pages of old trades


async def test_an_unknown_market_is_refused_for_good(sim: Simulator, rest_clients: list[RestClient]) -> None:
    from ticklake.exchanges.rest import RestError

    client = rest_client(sim)
    rest_clients.append(client)
    span = Span("NOPE-USD", 1, 10, 0, 0, 0)
    with pytest.raises(RestError) as raised:
        await fetch(client, "coinbase", span, page_size=10)
    assert not raised.value.retryable and raised.value.status == 404


async def test_okx_pages_by_trade_id_towards_older_trades(sim: Simulator, rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("okx", "BTC/USDT")
    span = span_of("okx", tape, 40, 259)
    before = len(sim.rest_requests("okx"))
    trades, pages = await fetch(client, "okx", span, page_size=100)
    assert [key(t) for t in trades] == [key(t) for t in tape[40:260]]
    requests = sim.rest_requests("okx")[before:]
    assert len(requests) == pages == 3  # 220 trades: pages of 100 from after=last+1 down to the first
    afters = [int(dict(part.split("=") for part in r.query.split("&"))["after"]) for r in requests]
    assert afters[0] == span.last + 1 and afters == sorted(afters, reverse=True)
    assert all("instId=BTC-USDT" in r.query and "type=1" in r.query and "limit=100" in r.query for r in requests)


async def test_okx_an_unknown_instrument_is_refused_for_good(sim: Simulator, rest_clients: list[RestClient]) -> None:
    from ticklake.exchanges.rest import RestError

    client = rest_client(sim)
    rest_clients.append(client)
    with pytest.raises(RestError, match="51001") as raised:
        await fetch(client, "okx", Span("NOPE-USDT", 1, 10, 0, 0, 0), page_size=10)
    assert not raised.value.retryable
