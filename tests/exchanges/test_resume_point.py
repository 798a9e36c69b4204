"""Where a feed resumes: after the newest trade held of a market, with the holes below it to backfill."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.factories import trade
from ticklake.exchanges.gaps import Gap, Resume, resume_from
from ticklake.exchanges.resume import TailReader, broker_resume_points, held_trades
from ticklake.model import Message, ResumePoint, trades_topic


def test_a_contiguous_tape_resumes_from_its_newest_trade() -> None:
    assert resume_from([(5, 50), (3, 30), (4, 40), (4, 40)], "BTCUSDT") == Resume(ResumePoint(5, 50), [])


def test_a_hole_left_by_an_unfinished_backfill_is_fetched_again() -> None:
    assert resume_from([(1, 10), (2, 20), (7, 70), (8, 80)], "BTCUSDT") == \
        Resume(ResumePoint(8, 80), [Gap("BTCUSDT", 3, 6, 20, 70)])


def test_nothing_known_means_no_resume_point() -> None:
    assert resume_from([]) is None


@given(st.sets(st.integers(0, 200), min_size=1))
def test_the_newest_id_resumes_and_the_holes_are_exactly_the_missing_ids_below_it(ids: set[int]) -> None:
    resume = resume_from((i, i * 10) for i in ids)
    assert resume is not None and resume.point == ResumePoint(max(ids), max(ids) * 10)
    missing = {i for gap in resume.holes for i in range(gap.first, gap.last + 1)}
    assert missing == set(range(min(ids), max(ids) + 1)) - ids
    for gap in resume.holes:  # each with the times of the trades around it
        assert (gap.before_ts_us, gap.after_ts_us) == ((gap.first - 1) * 10, (gap.last + 1) * 10)


# --- from what the broker holds (exchanges/resume.py; against a real broker: tests/bus/test_kafka_bus.py) ---
def tail_in_steps(*steps: list[Message]) -> tuple[TailReader, list[int]]:
    """A broker's trades topics read back in ``steps`` (newest first), as bus/kafka/tail.py hands them
    over: the next step only while ``enough()`` says no once the previous one was handed over.
    Also returns the steps read, by index."""
    read: list[int] = []

    def read_tail(enough: Callable[[], bool]) -> Iterator[Message]:
        for index, step in enumerate(steps):
            read.append(index)
            yield from step
            if enough():
                return

    return read_tail, read


def on_broker(trade_id: int, offset: int, **fields: Any) -> Message:
    return Message(trades_topic("binance"), "BTC/USDT", trade(trade_id, **fields), 0, offset)


def test_the_broker_is_read_further_back_only_while_a_wanted_market_was_not_seen() -> None:
    eth = [Message(trades_topic("binance"), "ETH/USDT", trade(7, symbol="ETH/USDT"), 1, 0)]
    read_tail, read = tail_in_steps([on_broker(10, 5)], eth, [on_broker(9, 4)])
    held = held_trades(read_tail, {("binance", "BTCUSDT"), ("binance", "ETHUSDT")})
    assert read == [0, 1]  # both markets seen after the second step: the third is not read
    assert held == {("binance", "BTCUSDT"): {10: trade(10).ts_us}, ("binance", "ETHUSDT"): {7: trade(7).ts_us}}
    read_tail, read = tail_in_steps([on_broker(10, 5)], eth)
    assert held_trades(read_tail) == {("binance", "BTCUSDT"): {10: trade(10).ts_us}} and read == [0]


def test_a_backfills_old_ids_below_the_oldest_streamed_trade_read_are_no_holes() -> None:
    """A backfill publishes old ids late: the ids between them and the stream's were published before
    what was read, not lost. Backfilled ids at or above the streamed floor count as held."""
    stream = [on_broker(i, offset) for offset, i in enumerate(range(200, 206))]
    backfill = [on_broker(i, 6 + n, conn_id="binance-rest-1") for n, i in enumerate((150, 151, 203))]
    read_tail, _read = tail_in_steps([*stream, *backfill])
    assert broker_resume_points(read_tail) == {("binance", "BTCUSDT"): Resume(ResumePoint(205, trade(205).ts_us), [])}
    read_tail, _read = tail_in_steps([*stream[:2], *stream[3:]])  # 202 lost between streamed trades: a hole
    assert broker_resume_points(read_tail)[("binance", "BTCUSDT")].holes == \
        [Gap("BTCUSDT", 202, 202, trade(201).ts_us, trade(203).ts_us)]
