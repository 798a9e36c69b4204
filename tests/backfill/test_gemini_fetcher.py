"""Gemini's window fetcher (``since``) against the simulated ``/v1/trades``: exactly the tape from a time
on, page by page forward (timestamp, then since_tid), and the seven-day reach."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.backfill.conftest import rest_client
from tests.feeds.conftest import key
from ticklake.exchanges.rest import RestClient, Span
from ticklake.exchanges.rest.base import WindowTradeFetcher
from ticklake.model import Trade
from ticklake.settings import SimulatorSettings
from ticklake.simulator import RestLimit, Simulator, TapeTrade, VenueOptions
from ticklake.venues.gemini.rest import MAX_PAGE, REACH_S, GeminiTrades
from ticklake.venues.gemini.simulated import GeminiRest

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USD"
NATIVE = "BTCUSD"


class Stamp:
    conn_id = "test-rest-1"

    def __init__(self) -> None:
        self.frames = 0

    def next_frame(self) -> int:
        self.frames += 1
        return self.frames


@pytest.fixture
async def sim() -> Simulator:
    simulator = Simulator(SimulatorSettings(trades_per_second=200, seed=5), {"gemini": [SYMBOL, "ETH/USD"]},
                          options=VenueOptions(history_trades=1200))
    await simulator.start()
    simulator.pause()  # a still tape: the oracle does not move under the test
    yield simulator  # type: ignore[misc]
    await simulator.close()


async def window(client: RestClient, start_us: int, page_size: int) -> tuple[list[Trade], int]:
    """What the backfill keeps of ``since``: trades from ``start_us`` on, dedup by id, in page order."""
    fetcher: WindowTradeFetcher = GeminiTrades(page_size)
    stamp = Stamp()
    kept: dict[int, Trade] = {}
    async for page in fetcher.since(client, NATIVE, start_us, stamp):
        assert page.frame_seq == stamp.frames
        assert [(t.ts_us, t.trade_id) for t in page.trades] == sorted((t.ts_us, t.trade_id) for t in page.trades)
        for trade in page.trades:
            if trade.ts_us >= start_us:
                kept.setdefault(trade.trade_id, trade)
    return list(kept.values()), stamp.frames


def from_time(tape: list[TapeTrade], start_us: int) -> list[tuple[int, str, str, str, int]]:
    return [key(t) for t in tape if t.ts_us >= start_us]


async def test_since_returns_exactly_the_tape_from_a_time_across_pages(sim: Simulator,
                                                                      rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("gemini", SYMBOL)
    assert len(tape) > 1000
    start_us = tape[-730].ts_us  # a time some trades share (bursts): all of them from it on
    trades, pages = await window(client, start_us, page_size=100)
    assert [key(t) for t in trades] == from_time(tape, start_us)
    assert pages == len(from_time(tape, start_us)) // 100 + 1
    # The pages served (a request the venue throttled with 429 was waited out and asked again).
    requests = [r for r in sim.rest_requests("gemini") if r.status == 200][-pages:]
    assert "timestamp=" in requests[0].query and all("since_tid=" in r.query for r in requests[1:])
    assert all(r.path == f"/v1/trades/{NATIVE}" for r in requests)
    assert all(t.symbol == SYMBOL and t.exchange == "gemini" for t in trades)


async def test_a_window_within_one_page_and_the_present(sim: Simulator, rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("gemini", SYMBOL)
    start_us = tape[-20].ts_us
    trades, pages = await window(client, start_us, page_size=MAX_PAGE)
    assert [key(t) for t in trades] == from_time(tape, start_us) and pages == 1
    trades, pages = await window(client, tape[-1].ts_us + 1000, page_size=MAX_PAGE)
    assert (trades, pages) == ([], 1)  # nothing newer: one empty page


async def test_the_rest_page_semantics(sim: Simulator) -> None:
    """The oldest ``limit_trades`` after the point given, newest first; without one, the newest."""
    tape = sim.tape("gemini", SYMBOL)
    sim.set_rest_limit("gemini", RestLimit(per_second=1000.0, burst=1000))
    async with httpx.AsyncClient(base_url=sim.rest_urls["gemini"]) as http:
        newest = (await http.get(f"/v1/trades/{NATIVE.lower()}")).json()
        after = (await http.get(f"/v1/trades/{NATIVE}", params={"since_tid": tape[10].trade_id,
                                                               "limit_trades": 1000})).json()
        by_time = (await http.get(f"/v1/trades/{NATIVE}", params={"timestamp": tape[10].ts_us // 1000,
                                                                 "limit_trades": 5})).json()
        seconds = (await http.get(f"/v1/trades/{NATIVE}", params={"timestamp": tape[10].ts_us // 1_000_000,
                                                                 "limit_trades": 5})).json()
        unknown = await http.get("/v1/trades/NOPEUSD")
        bad = await http.get(f"/v1/trades/{NATIVE}", params={"limit_trades": "x"})
    assert [r["tid"] for r in newest] == [t.trade_id for t in reversed(tape[-50:])]  # default 50
    assert [r["tid"] for r in after] == [t.trade_id for t in reversed(tape[11:11 + 500])]  # at most 500
    later = [t for t in tape if t.ts_us // 1000 > tape[10].ts_us // 1000][:5]
    assert [r["tid"] for r in by_time] == [t.trade_id for t in reversed(later)]  # strictly after
    assert [r["timestampms"] for r in seconds] == sorted((r["timestampms"] for r in seconds), reverse=True)
    assert min(r["timestampms"] for r in seconds) > tape[10].ts_us // 1_000_000 * 1000  # seconds: after S.000
    row = newest[0]
    assert row == {"timestamp": tape[-1].ts_us // 1_000_000, "timestampms": tape[-1].ts_us // 1000,
                   "tid": tape[-1].trade_id, "price": tape[-1].price, "amount": tape[-1].qty, "exchange": "gemini",
                   "type": tape[-1].side}
    assert unknown.status_code == 400 and unknown.json()["reason"] == "InvalidSymbol"
    assert bad.status_code == 400 and bad.json()["result"] == "error"


async def test_the_documented_rate_limit_answers_429(sim: Simulator) -> None:
    """120 a minute with five more in a burst: a flood gets 429 ``RateLimit``."""
    async with httpx.AsyncClient(base_url=sim.rest_urls["gemini"]) as http:
        answers = [await http.get(f"/v1/trades/{NATIVE}", params={"limit_trades": 1}) for _ in range(8)]
    assert [a.status_code for a in answers[:5]] == [200] * 5
    assert answers[-1].status_code == 429 and answers[-1].json()["reason"] == "RateLimit"


async def test_the_reach_is_seven_days_and_older_trades_are_not_served(sim: Simulator,
                                                                     rest_clients: list[RestClient],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert GeminiTrades().reach_s == REACH_S == 7 * 86_400
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("gemini", SYMBOL)
    # The venue keeps a window: shrink it so that the older half of the tape is beyond it.
    middle = tape[len(tape) // 2]
    monkeypatch.setattr(GeminiRest, "retention_s", time.time() - middle.ts_us / 1_000_000)
    trades, _ = await window(client, tape[0].ts_us, page_size=MAX_PAGE)
    assert trades and trades[0].ts_us >= middle.ts_us - 1000  # nothing from before the window
    assert [key(t) for t in trades] == from_time(tape, trades[0].ts_us)


async def test_pages_by_span_are_the_window_up_to_its_end(sim: Simulator, rest_clients: list[RestClient]) -> None:
    client = rest_client(sim)
    rest_clients.append(client)
    tape = sim.tape("gemini", SYMBOL)
    span = Span(NATIVE, tape[100].trade_id, tape[700].trade_id, tape[99].ts_us, 0, tape[701].ts_us)
    got = [t async for page in GeminiTrades(200).pages(client, span, Stamp()) for t in page.trades]
    ids = {t.trade_id for t in got}
    assert {t.trade_id for t in tape[100:701]} <= ids
    assert all(tape[99].ts_us <= t.ts_us <= tape[701].ts_us for t in got)
