"""The gap tracker: examples, and properties over random tapes with drops, repeats and reorders."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ticklake.exchanges.gaps import Gap, GapTracker, SequenceTracker
from ticklake.model import ResumePoint, Trade


def trade(trade_id: int, native: str = "BTCUSDT", ts_us: int | None = None) -> Trade:
    return Trade("binance", "BTC/USDT", native, trade_id, "1", "1", "buy",
                 trade_id * 10 if ts_us is None else ts_us, 0)


def feed(tracker: GapTracker, ids: list[int], native: str = "BTCUSDT") -> list[Gap]:
    opened: list[Gap] = []
    for trade_id in ids:
        opened += tracker.observe((trade(trade_id, native),)) or []
    return opened


def test_a_contiguous_tape_has_no_gap() -> None:
    tracker = GapTracker()
    assert feed(tracker, list(range(100, 200))) == []
    assert tracker.newest("BTCUSDT") == (199, 1990)
    assert tracker.pending("BTCUSDT") == []


def test_a_jump_opens_one_gap_with_the_times_around_it() -> None:
    tracker = GapTracker()
    assert feed(tracker, [5, 6, 10]) == [Gap("BTCUSDT", 7, 9, 60, 100)]
    assert tracker.pending("BTCUSDT") == [(7, 9)]
    assert tracker.missing("BTCUSDT") == 3


def test_late_trades_shrink_split_and_close_a_gap() -> None:
    tracker = GapTracker()
    feed(tracker, [1, 10])
    assert feed(tracker, [5]) == []  # a late delivery splits the gap
    assert tracker.pending("BTCUSDT") == [(2, 4), (6, 9)]
    feed(tracker, [2, 9, 9, 1])  # shrink both ends; repeats change nothing
    assert tracker.pending("BTCUSDT") == [(3, 4), (6, 8)]
    assert tracker.fill([trade(i) for i in (3, 4, 6, 7, 8, 8)]) == 5
    assert tracker.pending("BTCUSDT") == []


def test_markets_are_tracked_apart() -> None:
    tracker = GapTracker()
    frame = (trade(1, "A"), trade(100, "B"), trade(2, "A"), trade(102, "B"))
    assert tracker.observe(frame) == [Gap("B", 101, 101, 1000, 1020)]


def test_a_resume_point_makes_the_downtime_a_gap() -> None:
    tracker = GapTracker({"BTCUSDT": ResumePoint(trade_id=50, ts_us=777)})
    assert feed(tracker, [60, 61]) == [Gap("BTCUSDT", 51, 59, 777, 600)]
    # Trades at or below the resume point are repeats of what was stored.
    assert feed(tracker, [40, 50]) == []
    assert tracker.pending("BTCUSDT") == [(51, 59)]


def test_abandon_clips_to_the_range_and_reports_what_it_gave_up() -> None:
    tracker = GapTracker()
    feed(tracker, [1, 10, 20])
    assert tracker.abandon("BTCUSDT", 5, 15) == [(5, 9), (11, 15)]
    assert tracker.pending("BTCUSDT") == [(2, 4), (16, 19)]
    assert tracker.pending("BTCUSDT", 3, 17) == [(3, 4), (16, 17)]
    assert tracker.abandon("BTCUSDT", 0, 100) == [(2, 4), (16, 19)]
    assert tracker.abandon("BTCUSDT", 0, 100) == []


def test_sequence_jumps_are_counted_repeats_are_not() -> None:
    tracker = SequenceTracker()
    assert [tracker.observe(s) for s in (0, 1, 2, 5, 6, 6, 3, 7, 10)] == [0, 0, 0, 2, 0, 0, 0, 0, 2]


# --- properties ------------------------------------------------------------------------------------

@st.composite
def delivered_tapes(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """A tape ``start .. end`` delivered with drops, repeats and local reorders."""
    start = draw(st.integers(0, 10**12))
    length = draw(st.integers(1, 300))
    ids = list(range(start, start + length))
    kept = [i for i in ids if i == start or not draw(st.booleans()) or draw(st.integers(0, 9)) > 1]
    delivered: list[int] = []
    for trade_id in kept:
        delivered.append(trade_id)
        if draw(st.integers(0, 9)) == 0:  # a repeat, now or later
            delivered.append(draw(st.sampled_from(kept)))
    # Reorder: swap some neighbours (never before the first, which starts the tracking).
    for index in range(1, len(delivered) - 1):
        if draw(st.integers(0, 9)) == 0:
            delivered[index], delivered[index + 1] = delivered[index + 1], delivered[index]
    return start, max(delivered), delivered


def assert_partition(tracker: GapTracker, start: int, end: int, delivered: set[int]) -> None:
    pending = tracker.pending("BTCUSDT")
    covered: list[int] = []
    for first, last in pending:
        assert first <= last
        covered.extend(range(first, last + 1))
    assert len(covered) == len(set(covered)), "pending ranges overlap"
    assert pending == sorted(pending)
    assert not set(covered) & delivered, "a delivered id is still pending"
    assert set(covered) | delivered == set(range(start, end + 1)), "an id is neither delivered nor pending"


@settings(max_examples=150, deadline=None)
@given(delivered_tapes())
def test_pending_and_delivered_partition_the_id_range(tape: tuple[int, int, list[int]]) -> None:
    start, end, delivered = tape
    tracker = GapTracker()
    opened = feed(tracker, delivered)
    seen = {i for i in delivered if i >= start}
    assert_partition(tracker, start, end, seen)
    # The reported gaps are disjoint and, with what was delivered in order, cover the range.
    reported = [i for gap in opened for i in range(gap.first, gap.last + 1)]
    assert len(reported) == len(set(reported))
    assert set(reported) | seen == set(range(start, end + 1))
    assert tracker.newest("BTCUSDT") is not None and tracker.newest("BTCUSDT")[0] == end  # type: ignore[index]


@settings(max_examples=100, deadline=None)
@given(delivered_tapes(), st.data())
def test_backfill_and_abandon_keep_the_partition(tape: tuple[int, int, list[int]], data: st.DataObject) -> None:
    start, end, delivered = tape
    tracker = GapTracker()
    feed(tracker, delivered)
    seen = set(delivered)
    missing = sorted(set(range(start, end + 1)) - seen)
    backfilled = data.draw(st.lists(st.sampled_from(missing), unique=True)) if missing else []
    assert tracker.fill([trade(i) for i in backfilled]) == len(backfilled)
    assert tracker.fill([trade(i) for i in backfilled]) == 0  # a repeated page fills nothing
    seen |= set(backfilled)
    assert_partition(tracker, start, end, seen)
    assert tracker.missing("BTCUSDT") == len(missing) - len(backfilled)
    low, high = sorted(data.draw(st.lists(st.integers(start - 5, end + 5), min_size=2, max_size=2)))
    lost = tracker.abandon("BTCUSDT", low, high)
    abandoned = {i for a, b in lost for i in range(a, b + 1)}
    assert abandoned == {i for i in missing if low <= i <= high} - set(backfilled)
    assert_partition(tracker, start, end, seen | abandoned)


@given(st.lists(st.integers(0, 50), max_size=100))
def test_sequence_gaps_count_exactly_the_skipped_numbers_of_an_increasing_run(numbers: list[int]) -> None:
    run = sorted(set(numbers))
    tracker = SequenceTracker()
    skipped = sum(tracker.observe(n) for n in run)
    assert skipped == (run[-1] - run[0] + 1 - len(run) if run else 0)


# --- holes found after delivery (a broker's or the warehouse's) -----------------------------------
def test_holes_between_held_ids_and_above_them_up_to_the_newest_handed_on() -> None:
    from ticklake.exchanges.gaps import holes

    held = {i: i * 10 for i in (3, 4, 5, 9, 10, 12)}
    assert holes(held, (15, 150)) == [Gap("", 6, 8, 50, 90), Gap("", 11, 11, 100, 120), Gap("", 13, 15, 120, 150)]
    assert holes(held, (12, 120)) == [Gap("", 6, 8, 50, 90), Gap("", 11, 11, 100, 120)]
    assert holes(held, (9, 90)) == [Gap("", 6, 8, 50, 90)]  # ids above what was handed on are not judged
    assert holes({}, (9, 90)) == []  # nothing held: nothing to compare with


def test_reopen_makes_delivered_ids_pending_again_except_pending_or_given_up_ones() -> None:
    tracker = GapTracker()
    feed(tracker, [1, 10, 11, 30])  # pending: 2..9, 12..29
    tracker.abandon("BTCUSDT", 20, 25)  # given up for good
    assert tracker.pending("BTCUSDT") == [(2, 9), (12, 19), (26, 29)]
    # A hole found later over 8..27: only what is neither pending nor given up is new.
    assert tracker.reopen("BTCUSDT", 8, 27) == [(10, 11)]
    assert tracker.pending("BTCUSDT") == [(2, 9), (10, 11), (12, 19), (26, 29)]
    assert tracker.missing("BTCUSDT") == 8 + 2 + 8 + 4
    # Filling works on reopened ids like on any pending id; a second reopen of a filled range works again.
    assert tracker.fill([trade(10), trade(11)]) == 2
    assert tracker.reopen("BTCUSDT", 10, 11) == [(10, 11)]
    assert tracker.reopen("BTCUSDT", 21, 22) == []  # given up: not asked for again


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 10)), max_size=20),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 10)), max_size=5))
@settings(max_examples=300, deadline=None)
def test_reopen_adds_exactly_the_ids_not_pending_and_not_given_up(reopened: list[tuple[int, int]],
                                                                   abandoned: list[tuple[int, int]]) -> None:
    tracker = GapTracker()
    feed(tracker, [0, 80])
    for first, length in abandoned:
        tracker.abandon("BTCUSDT", first, first + length)
    given_up = {i for first, length in abandoned for i in range(first, first + length + 1) if 1 <= i <= 79}
    tracker.fill([trade(i) for i in range(1, 80)])  # the rest of the jump's gap delivered: nothing pending
    pending: set[int] = set()
    for first, length in reopened:
        added = tracker.reopen("BTCUSDT", first, first + length)
        ids = {i for a, b in added for i in range(a, b + 1)}
        assert ids == set(range(first, first + length + 1)) - pending - given_up
        pending |= ids
        assert {i for a, b in tracker.pending("BTCUSDT") for i in range(a, b + 1)} == pending
        ranges = tracker.pending("BTCUSDT")
        assert ranges == sorted(ranges) and all(b < c for (_, b), (c, _) in pairwise(ranges))
