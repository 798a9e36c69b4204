"""Where a feed resumes: the newest trade below the first hole in a market's recent ids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ticklake.exchanges.gaps import resume_point
from ticklake.model import ResumePoint


def test_a_contiguous_tape_resumes_from_its_newest_trade() -> None:
    assert resume_point([(5, 50), (3, 30), (4, 40), (4, 40)]) == ResumePoint(5, 50)


def test_a_hole_left_by_an_unfinished_backfill_is_fetched_again() -> None:
    assert resume_point([(1, 10), (2, 20), (7, 70), (8, 80)]) == ResumePoint(2, 20)


def test_nothing_known_means_no_resume_point() -> None:
    assert resume_point([]) is None


@given(st.sets(st.integers(0, 200), min_size=1))
def test_every_id_up_to_the_resume_point_is_known_and_the_next_is_missing(ids: set[int]) -> None:
    point = resume_point((i, i * 10) for i in ids)
    assert point is not None and point.ts_us == point.trade_id * 10
    assert set(range(min(ids), point.trade_id + 1)) <= ids
    assert point.trade_id + 1 not in ids
