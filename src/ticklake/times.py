"""Conversions between the units ticklake keeps time in, and the texts it writes times as.

Three units: Unix microseconds (``int``; trades, the warehouse's DateTime64(6)), Unix seconds (``int``;
stored_at, candle buckets, watermarks) and aware ``datetime`` in UTC. Every layer uses these (the
warehouse binds datetimes, the cold tier writes Iceberg literals, the API reads both), so this module
sits beside ``model.py`` and imports no layer.

Each function is named by what it converts: ``<to>_from_<from>`` for units, ``iso_<from>[_z]`` for
RFC 3339 texts in UTC (``+00:00`` as pyiceberg and ``datetime.isoformat`` write it, or ``Z``).
Conversions are integer arithmetic: exact for every microsecond, not rounded through a float.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def utc_from_us(us: int) -> datetime:
    """Unix microseconds as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def utc_from_seconds(seconds: int) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return EPOCH + timedelta(seconds=seconds)


def us_from_datetime(moment: datetime) -> int:
    """A datetime as Unix microseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _ONE_US


def iso_seconds(seconds: int) -> str:
    """Unix seconds as RFC 3339 UTC, e.g. ``2026-01-01T00:00:00+00:00`` (a pyiceberg timestamptz literal)."""
    return f"{utc_from_seconds(seconds):%Y-%m-%dT%H:%M:%S}+00:00"


def iso_seconds_z(seconds: int) -> str:
    """Unix seconds as RFC 3339 UTC with a Z, e.g. ``2026-01-01T00:00:00Z`` (reports, API answers)."""
    return f"{utc_from_seconds(seconds):%Y-%m-%dT%H:%M:%S}Z"


def iso_us(us: int) -> str:
    """Unix microseconds as RFC 3339 UTC, always six fraction digits, e.g.
    ``2026-01-01T00:00:00.000001+00:00`` (a pyiceberg timestamptz literal)."""
    moment = utc_from_us(us)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}+00:00"


def iso_us_z(us: int) -> str:
    """Unix microseconds as RFC 3339 UTC with a Z, always six fraction digits, e.g.
    ``2026-01-02T03:04:05.000123Z`` (a trade's time in API answers)."""
    moment = utc_from_us(us)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"
