"""The shared mapper helpers: exact timestamps, exact decimal text, the symbol memo."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticklake.exchanges.mappers.common import (
    SymbolMemo,
    decimal_number_text,
    epoch_seconds_text_to_us,
    is_decimal_text,
    rfc3339_to_us,
    texts_valid,
)
from ticklake.venues import from_native

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _oracle_us(moment: datetime, nanos: int, offset_minutes: int) -> int:
    """Epoch µs of a wall-clock ``moment`` + ``nanos`` at a UTC offset: integer arithmetic only."""
    utc = moment.replace(tzinfo=UTC) - timedelta(minutes=offset_minutes)
    delta = utc - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + nanos // 1000


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.replace(microsecond=0)),
    nanos=st.integers(0, 999_999_999),
    digits=st.integers(0, 9),
    offset_minutes=st.sampled_from([0, 60, -300, 330, 14 * 60, -12 * 60]),
    zulu=st.sampled_from(["Z", "z", "+00:00"]),
)
def test_rfc3339_to_us_is_exact_and_truncates(moment: datetime, nanos: int, digits: int, offset_minutes: int,
                                             zulu: str) -> None:
    fraction = f"{nanos:09d}"[:digits]
    nanos = int(fraction.ljust(9, "0")) if digits else 0
    if offset_minutes == 0:
        zone = zulu
    else:
        sign = "+" if offset_minutes > 0 else "-"
        zone = f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + zone
    assert rfc3339_to_us(text) == _oracle_us(moment, nanos, offset_minutes)


@pytest.mark.parametrize(("text", "want"), [
    ("2026-11-26T02:00:00Z", 1_795_658_400_000_000),
    ("2026-11-26T02:00:00.123456789Z", 1_795_658_400_123_456),
    ("2026-11-26T02:00:00.9999999Z", 1_795_658_400_999_999),  # truncated, never rounded up
    ("2026-11-26T02:00:00.1Z", 1_795_658_400_100_000),
    ("2026-11-26T03:00:00.5+01:00", 1_795_658_400_500_000),
    ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),
    ("1970-01-01T00:00:00Z", 0),
])
def test_rfc3339_known_values(text: str, want: int) -> None:
    assert rfc3339_to_us(text) == want


@pytest.mark.parametrize("text", [
    "", "x", "2026-11-26", "2026-11-26T02:00:00", "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-11-26T24:00:00Z", "2026-11-26T02:00:60Z", "2026-11-26T02:00:00+25:00", "2026-11-26T02:00:00zz",
    "2026-11-26T02:00:00xZ", "2026-11-26T02:00:00.Z", "2026-11-26 02:00:00Z", "20261126T020000Z",
    "2026-11-26T02:00:00.1234567890Z", "2026-11-26T02:00Z", "2026-W48-4T02:00:00Z",
    "tomorrow", "\uff12\uff10\uff12\uff16-11-26T02:00:00Z",  # full-width digits
])
def test_rfc3339_rejects_non_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        rfc3339_to_us(text)


def test_rfc3339_rejects_non_str() -> None:
    with pytest.raises(ValueError):
        rfc3339_to_us(1795658400)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "want"), [
    ("1618678142.557535", 1_618_678_142_557_535),
    ("1618678142.5", 1_618_678_142_500_000),
    ("1688669597.8277369", 1_688_669_597_827_736),
    ("1618678142", 1_618_678_142_000_000),
    ("0.000001", 1),
])
def test_epoch_seconds_text(text: str, want: int) -> None:
    assert epoch_seconds_text_to_us(text) == want


@pytest.mark.parametrize("text", ["", "-1.5", "1e9", "1.", ".5", "NaN", " 1", "1,5", "١٢"])
def test_epoch_seconds_text_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        epoch_seconds_text_to_us(text)


@given(st.integers(0, 10**12), st.integers(0, 10**9 - 1), st.integers(1, 9))
def test_epoch_seconds_text_matches_decimal(whole: int, frac: int, digits: int) -> None:
    text = f"{whole}.{f'{frac:09d}'[:digits]}"
    assert epoch_seconds_text_to_us(text) == int(Decimal(text) * 1_000_000)


# Zero and negative values are well-formed: the warehouse, not the parser, dead-letters a zero or
# negative price (with its rule and raw frame), and the frame's other trades still go through.
VALID = ["1", "64123.10", "0.00000638", "100", "00.01", "010.5", "0.10", "123456789012345678901234567890.5",
         "0", "0.0", "00", "0.000", "-1", "-0", "-0.0", "-0.5"]
INVALID = ["", "+1", "1.", ".5", "1.2.3", "1e5", "1E5", "NaN", "nan", "inf", "--1", "-", "-.5",
           "Infinity", " 1", "1 ", "1,5", "1_000", "\u0661", "\u00b2", "0x10", "1..2", ".", "- 1"]


@pytest.mark.parametrize("text", VALID)
def test_decimal_text_accepts(text: str) -> None:
    assert is_decimal_text(text)
    assert texts_valid([text]) and texts_valid([text, "1"]) and texts_valid(["1", text, "2"])


@pytest.mark.parametrize("text", INVALID)
def test_decimal_text_rejects(text: str) -> None:
    assert not is_decimal_text(text)
    assert not texts_valid([text]) and not texts_valid([text, "1"]) and not texts_valid(["1", "2", text])


_REFERENCE = re.compile(r"-?[0-9]+(\.[0-9]+)?")


@given(st.text(alphabet="0123456789.-+eE n", max_size=12))
def test_decimal_text_matches_reference(text: str) -> None:
    reference = _REFERENCE.fullmatch(text) is not None
    assert is_decimal_text(text) == reference


def test_texts_valid_of_no_texts() -> None:
    assert texts_valid([])


@pytest.mark.parametrize(("value", "want"), [
    (Decimal("0.5147"), "0.5147"), (Decimal("1E-8"), "0.00000001"), (Decimal("2.8015E+3"), "2801.5"),
    (Decimal("6423.46326000"), "6423.46326000"), (Decimal("1E+2"), "100"), (Decimal("0"), "0"),
    (Decimal("0.000"), "0.000"), (Decimal("0E+5"), "0"), (Decimal("-1"), "-1"), (Decimal("-0.5"), "-0.5"),
])
def test_decimal_number_text(value: Decimal, want: str) -> None:
    assert decimal_number_text(value) == want


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")])
def test_decimal_number_text_rejects(value: Decimal) -> None:
    with pytest.raises(ValueError):
        decimal_number_text(value)


def test_symbol_memo_matches_from_native_and_stays_bounded() -> None:
    memo = SymbolMemo("binance")
    for native in ("BTCUSDT", "ETHBTC", "FOOBAR", ""):
        assert memo[native] == from_native("binance", native)
        assert memo[native] == from_native("binance", native)  # the memoized answer
    for native in ("btcusdt", "BTC/USDT", "BTCUSDT\x00"):  # not the venue's form: no market (issue 13)
        assert memo[native] == "" and memo[native] == ""
    for index in range(SymbolMemo.MAX_ENTRIES + 10):
        memo[f"X{index}USDT"]
    assert len(memo) <= SymbolMemo.MAX_ENTRIES
    assert memo["X1USDT"] == "X1/USDT"


def test_timezone_import_is_used() -> None:  # keeps the offset arithmetic above honest: +01:00 is 1 h ahead
    assert datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))) == datetime(2026, 1, 1, tzinfo=UTC)


def test_price_qty_times_valid_checks_every_value_of_a_frame() -> None:
    from ticklake.exchanges.mappers.common import price_qty_times_valid

    good = ["1.5", "2", "2026-11-26T02:00:00Z", "3", "0.1", "2026-11-26T03:00:00.123456789+01:00"]
    assert price_qty_times_valid([]) and price_qty_times_valid(good[:3]) and price_qty_times_valid(good)
    assert not price_qty_times_valid([*good, "1", "1", "2026-11-26T02:00:00xZ"])
    assert not price_qty_times_valid(["1", "+1", "2026-11-26T02:00:00Z"])
    assert price_qty_times_valid(["0", "-1", "2026-11-26T02:00:00Z"])  # zero, negative: well-formed
    assert not price_qty_times_valid(["1", "2026-11-26T02:00:00Z", "1"])  # order matters
    assert not price_qty_times_valid(["1", "1"])  # a triple per trade
    assert not price_qty_times_valid(["1", "1", "2026-11-26T02:00:00Z 1 1 2026-11-26T02:00:00Z"])  # spaces
    assert not price_qty_times_valid(["1 1 2026-11-26T02:00:00Z 1", "1", "2026-11-26T02:00:00Z"])


def test_texts_valid_is_not_fooled_by_spaces_inside_values() -> None:
    assert not texts_valid(["1 1", "1", "1"])
    assert not texts_valid(["1", "1 1"]) and not texts_valid(["1 1", "1"])
    assert texts_valid(["1", "1", "1"])


@pytest.mark.parametrize("value", [Decimal("1E-999999999"), Decimal("1E+999999999"), Decimal("1E-31"),
                                   Decimal("1E+31"), Decimal("0." + "0" * 40 + "1")])
def test_decimal_number_text_refuses_absurd_magnitudes(value: Decimal) -> None:
    with pytest.raises(ValueError):
        decimal_number_text(value)
