"""Where a feed resumes: after the newest trade held of a market, with the holes below it to backfill."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ticklake.exchanges.gaps import Gap, Resume, resume_from
from ticklake.model import ResumePoint


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
