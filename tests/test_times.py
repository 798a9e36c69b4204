"""The time conversions every layer shares (ticklake.times): exact round trips and the texts' formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ticklake.times import (
    EPOCH,
    iso_seconds,
    iso_seconds_z,
    iso_us,
    iso_us_z,
    us_from_datetime,
    utc_from_seconds,
    utc_from_us,
)

# 2026-01-02T03:04:05.000123Z, and moments where a float of seconds would lose the microsecond.
MOMENTS_US = [0, 1, -1, 1_767_323_045_000_123, 4_102_444_799_999_999, 253_402_300_799_999_999]


@pytest.mark.parametrize("us", MOMENTS_US)
def test_microseconds_round_trip_exactly(us: int) -> None:
    moment = utc_from_us(us)
    assert moment.tzinfo is UTC
    assert us_from_datetime(moment) == us


def test_a_naive_datetime_is_taken_as_utc_and_an_aware_one_by_its_offset() -> None:
    assert us_from_datetime(datetime(2026, 1, 2, 3, 4, 5, 123)) == 1_767_323_045_000_123
    plus_two = datetime(2026, 1, 2, 5, 4, 5, 123, tzinfo=timezone(timedelta(hours=2)))
    assert us_from_datetime(plus_two) == 1_767_323_045_000_123


def test_seconds_convert_to_the_same_moment_as_microseconds() -> None:
    assert utc_from_seconds(1_767_323_045) == utc_from_us(1_767_323_045_000_000) == datetime(2026, 1, 2, 3, 4, 5,
                                                                                             tzinfo=UTC)
    assert utc_from_seconds(0) == EPOCH == datetime(1970, 1, 1, tzinfo=UTC)


def test_the_texts_of_seconds() -> None:
    assert iso_seconds_z(1_767_323_045) == "2026-01-02T03:04:05Z"
    assert iso_seconds(1_767_323_045) == "2026-01-02T03:04:05+00:00"
    # The formats the code they replaced wrote: datetime.isoformat for whole seconds, RFC 3339 with Z.
    assert iso_seconds(1_767_323_045) == datetime.fromtimestamp(1_767_323_045, UTC).isoformat()
    assert iso_seconds_z(0) == "1970-01-01T00:00:00Z"
    assert iso_seconds_z(-1) == "1969-12-31T23:59:59Z"


def test_the_texts_of_microseconds_always_carry_six_digits() -> None:
    assert iso_us_z(1_767_323_045_000_123) == "2026-01-02T03:04:05.000123Z"
    assert iso_us(1_767_323_045_000_123) == "2026-01-02T03:04:05.000123+00:00"
    assert iso_us(1_767_323_045_000_000) == "2026-01-02T03:04:05.000000+00:00"
    assert iso_us_z(-1) == "1969-12-31T23:59:59.999999Z"


@pytest.mark.parametrize("us", MOMENTS_US)
def test_the_texts_parse_back_to_the_same_moment(us: int) -> None:
    assert datetime.fromisoformat(iso_us(us)) == utc_from_us(us)
    assert datetime.fromisoformat(iso_us_z(us)) == utc_from_us(us)
    seconds = us // 1_000_000
    assert datetime.fromisoformat(iso_seconds(seconds)) == utc_from_seconds(seconds)
    assert datetime.fromisoformat(iso_seconds_z(seconds)) == utc_from_seconds(seconds)
