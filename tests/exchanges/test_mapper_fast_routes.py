"""The hot paths' shortcuts give exactly what the checked paths (the specification) give.

* ``SECONDS`` / ``utc_time_to_us``: a timestamp's second memoized, plus ``fromisoformat``'s microsecond,
  against the uncached ``rfc3339_to_us``, on random valid and invalid RFC 3339 strings, memo cold or warm;
* the same through whole Kraken v2 and Coinbase Advanced Trade frames, with repeated timestamps (a trade
  whose timestamp text equals the one before it reuses its µs);
* Kraken's price/qty check relies on msgspec having validated each ``msgspec.Raw`` as one JSON value;
* Coinbase's trade ids are read with one msgspec call per event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticklake.exchanges.mappers.common import SECONDS, SecondsMemo, rfc3339_to_us, utc_time_to_us
from ticklake.model import ParsedFrame
from ticklake.venues.coinbase import mapper as coinbase
from ticklake.venues.kraken import mapper as kraken

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_rfc3339(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)))
    digits = draw(st.integers(0, 9))
    fraction = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits)))
    zone = draw(st.sampled_from(["Z", "Z", "Z", "z", "+00:00", "-00:00", "+01:00", "-05:30", "+14:00"]))
    separator = draw(st.sampled_from("TTTt"))
    return moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + (f".{fraction}" if digits else "") + zone


# Characters that make near misses: digits of other scripts, separators in the wrong place, spaces.
_NEAR = "0123456789-:.TtZz+ x,\uff10\u0663\u00b2"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(valid_rfc3339())
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        char = draw(st.sampled_from(_NEAR))
        if action == "insert" or index == len(text):
            text = text[:index] + char + text[index:]
        elif action == "replace":
            text = text[:index] + char + text[index + 1:]
        else:
            text = text[:index] + text[index + 1:]
    return text


@st.composite
def out_of_range(draw: st.DrawFn) -> str:
    """Right shape, impossible fields: month 00/13, day 00/30 Feb/32, hour 24, minute or second 60."""
    year = draw(st.sampled_from(["1970", "2023", "2024", "2026", "2100", "0000", "9999"]))
    month = draw(st.sampled_from(["00", "01", "02", "12", "13"]))
    day = draw(st.sampled_from(["00", "01", "28", "29", "30", "31", "32"]))
    hour = draw(st.sampled_from(["00", "23", "24", "99"]))
    minute = draw(st.sampled_from(["00", "59", "60"]))
    second = draw(st.sampled_from(["00", "59", "60", "61"]))
    tail = draw(st.sampled_from(["Z", ".5Z", ".123456789Z", ".9999999Z", "+01:00"]))
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}{tail}"


timestamps = st.one_of(valid_rfc3339(), mutated(), out_of_range(),
                       st.text(alphabet=_NEAR, max_size=32))


def _spec_us(text: str) -> int | None:
    try:
        return rfc3339_to_us(text)
    except ValueError:
        return None


def _route_us(text: str) -> int | None:
    try:
        return utc_time_to_us(text)
    except ValueError:
        return None


@SETTINGS
@given(texts=st.lists(timestamps, min_size=1, max_size=8), cold=st.booleans())
def test_seconds_memo_route_equals_rfc3339_to_us(texts: list[str], cold: bool) -> None:
    if cold:
        SECONDS.clear()
    for text in texts:
        want = _spec_us(text)
        got = _route_us(text)
        if got is not None:  # whatever the route takes, it reads exactly as the specification does
            assert got == want, text
        if want is not None and text.endswith("Z"):  # and it takes every valid UTC "Z" timestamp
            assert got == want, text
        assert _route_us(text) == got  # the memo, now warm, changes nothing
    for second, us in list(SECONDS.items()):  # only valid seconds are ever stored, with their value
        assert rfc3339_to_us(second + "Z") == us


@pytest.mark.parametrize(("text", "want"), [
    ("2026-11-26T02:00:00Z", 1_795_658_400_000_000),
    ("2026-11-26T02:00:00.123456789Z", 1_795_658_400_123_456),
    ("2026-11-26T02:00:00.9999999Z", 1_795_658_400_999_999),  # truncated, never rounded up
    ("2026-11-26t02:00:00.1Z", 1_795_658_400_100_000),
    ("2024-02-29T23:59:59.999999Z", 1_709_251_199_999_999),
    ("1970-01-01T00:00:00Z", 0),
])
def test_utc_time_to_us_known_values(text: str, want: int) -> None:
    assert utc_time_to_us(text) == want == rfc3339_to_us(text)


@pytest.mark.parametrize("text", [
    "2026-11-26T02:00:00+00:00", "2026-11-26T02:00:00z",  # valid, but not the route's: checked path
    "2026-11-26T02:00:00.Z", "2026-11-26T02:00:00xZ", "2026-11-26T02:00:00.123456xZ", "2026-11-26T02:00:00,5Z",
    "2026-11-26T02:00:00.1234567890Z", "2026-11-26T02:00:00.123456 Z", "2026-11-26T02:00:00",
    "2026-02-29T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26 02:00:00Z", "\uff12026-11-26T02:00:00Z",
    "2026-11-26T02:00:00.12\u0663Z", "", "Z",
])
def test_utc_time_to_us_refuses_what_it_does_not_take(text: str) -> None:
    with pytest.raises(ValueError):
        utc_time_to_us(text)


def test_seconds_memo_stores_only_valid_seconds_and_stays_bounded() -> None:
    memo = SecondsMemo()
    for bad in ("2026-02-30T00:00:00", "2026-11-26T24:00:00", "2026-11-26 02:00:00", "2026-11-26T02:00", "x",
                "\uff12\uff10\uff12\uff16-11-26T02:00:00"):
        with pytest.raises(ValueError):
            memo[bad]
    assert not memo
    assert memo["2026-11-26T02:00:00"] == 1_795_658_400_000_000
    for index in range(SecondsMemo.MAX_ENTRIES + 10):
        memo[datetime.fromtimestamp(index, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    assert len(memo) <= SecondsMemo.MAX_ENTRIES
    assert memo["1970-01-01T00:00:07"] == 7_000_000


# --- whole frames ---------------------------------------------------------------------------------

# Few distinct texts, so that trades of one frame repeat a timestamp or share its second.
frame_times = st.one_of(
    st.sampled_from(["2026-11-26T02:00:00.5Z", "2026-11-26T02:00:00.500001Z", "2026-11-26T02:00:01Z",
                     "2026-11-26T02:00:00.5+00:00", "2026-11-26T02:00:00xZ", "2026-11-26T02:00:60Z"]),
    timestamps)
kraken_numbers = st.sampled_from(["1.5", "2", "0", "-0", "-0.0", "-1.25", "0.000", "64123.10", "1E-8", "2.8015E+3",
                                  '"1.5"', '"01.5"', "1e-999999999"])
coinbase_amounts = st.sampled_from(["1.5", "2", "0", "-1.25", "0.000", "00.5", "68923.67", "1.", "+1", "1e5", "1 1",
                                    ""])
coinbase_ids = st.sampled_from(["1", "995098663", "007", "9223372036854775807", "9223372036854775808", "1,2", "",
                                "12a", "123456789012345678"])


def _kraken_frame(rows: list[tuple[str, str, str]]) -> bytes:
    data = ",".join(
        f'{{"symbol":"BTC/USD","side":"buy","price":{price},"qty":{qty},"ord_type":"limit",'
        f'"trade_id":{index},"timestamp":{json.dumps(time)}}}' for index, (price, qty, time) in enumerate(rows))
    return f'{{"channel":"trade","type":"update","data":[{data}]}}'.encode()


def _coinbase_frame(rows: list[tuple[str, str, str, str]]) -> bytes:
    trades = [{"trade_id": trade_id, "product_id": "BTC-USD" if index % 3 else "ETH-USD", "price": price,
               "size": size, "side": "BUY", "time": time} for index, (trade_id, price, size, time) in enumerate(rows)]
    return json.dumps({"channel": "market_trades", "client_id": "", "timestamp": "2026-11-26T02:00:00Z",
                       "sequence_num": 5, "events": [{"type": "update", "trades": trades}]}).encode()


def _check_times(result: ParsedFrame, times: list[str]) -> None:
    if result.kind == "trades":
        assert [trade.ts_us for trade in result.trades] == [rfc3339_to_us(time) for time in times]


@SETTINGS
@given(rows=st.lists(st.tuples(kraken_numbers, kraken_numbers, frame_times), min_size=1, max_size=6))
def test_kraken_frames_fast_path_equals_checked_path(rows: list[tuple[str, str, str]]) -> None:
    payload = _kraken_frame(rows)
    result = kraken.parse_frame(payload, 7, "c", 3)
    message = msgspec.json.decode(payload, type=kraken._V2Trade)
    assert result == kraken._v2_trades_checked(message, 7, "c", 3)
    _check_times(result, [time for _, _, time in rows])


@SETTINGS
@given(rows=st.lists(st.tuples(coinbase_ids, coinbase_amounts, coinbase_amounts, frame_times), max_size=6))
def test_coinbase_frames_fast_path_equals_checked_path(rows: list[tuple[str, str, str, str]]) -> None:
    payload = _coinbase_frame(rows)
    result = coinbase.parse_frame(payload, 7, "c", 3)
    message = msgspec.json.decode(payload, type=coinbase._MarketTrades)
    assert result == coinbase._market_trades_checked(message, 7, "c", 3)
    _check_times(result, [time for *_, time in rows])


def test_repeated_timestamp_reuses_exactly_and_an_invalid_one_fails_the_frame() -> None:
    first, later = "2026-11-26T02:00:00.123456Z", "2026-11-26T02:00:00.5Z"
    rows = [("1", "1", first), ("2", "1", first), ("3", "1", later), ("4", "1", first)]
    result = kraken.parse_frame(_kraken_frame(rows), 1)
    assert [t.ts_us for t in result.trades] == [1_795_658_400_123_456] * 2 + [1_795_658_400_500_000,
                                                                                1_795_658_400_123_456]
    result = coinbase.parse_frame(_coinbase_frame([(str(i), p, q, t) for i, (p, q, t) in enumerate(rows)]), 1)
    assert [t.ts_us for t in result.trades] == [1_795_658_400_123_456] * 2 + [1_795_658_400_500_000,
                                                                                1_795_658_400_123_456]
    bad = "2026-11-26T02:00:00.1234567890Z"  # ten digits: the repeats must not slip through unchecked
    for frame in (_kraken_frame([("1", "1", bad), ("1", "1", bad)]),
                  _coinbase_frame([("1", "1", "1", bad), ("2", "1", "1", bad)])):
        result = (kraken if b"ord_type" in frame else coinbase).parse_frame(frame, 1)
        assert result.kind == "error" and "timestamp" in result.error


def test_offsets_take_the_checked_path_and_read_right() -> None:
    for rows in ([("1", "1", "2026-11-26T03:00:00.5+01:00")], [("1", "1", "2026-11-26T02:00:00.5z")] * 2):
        result = kraken.parse_frame(_kraken_frame(rows), 1)
        assert [t.ts_us for t in result.trades] == [1_795_658_400_500_000] * len(rows)


# --- Kraken: numbers as msgspec.Raw ----------------------------------------------------------------


@pytest.mark.parametrize("number", ["01", "1.", ".5", "-", "+1", "1.e5", "--1", "0x1", "1_0", "\u0661", "-01", "1.5.1",
                                    "NaN", "Infinity", "1 1"])
def test_kraken_numbers_that_are_not_json_numbers_are_errors(number: str) -> None:
    """Kraken's fast path checks only the characters of ``price``/``qty``, because msgspec has already
    rejected anything in them that is not one valid JSON value. This pins that."""
    for rows in ([(number, "1", "2026-11-26T02:00:00Z")], [("1", number, "2026-11-26T02:00:00Z")] * 3):
        result = kraken.parse_frame(_kraken_frame(rows), 1)
        assert result.kind == "error" and result.trades == (), (number, result)


@pytest.mark.parametrize(("number", "text"), [
    ("-0", "-0"), ("-0.0", "-0.0"), ("0", "0"), ("0.000", "0.000"), ("64123.10", "64123.10"), ("1E-8", "0.00000001"),
    ("-1.5", "-1.5"), ("123456789012345678901234567890.5", "123456789012345678901234567890.5"),
])
def test_kraken_numbers_keep_their_exact_text(number: str, text: str) -> None:
    for rows in ([(number, number, "2026-11-26T02:00:00Z")], [(number, number, "2026-11-26T02:00:00Z")] * 3):
        result = kraken.parse_frame(_kraken_frame(rows), 1)
        assert result.kind == "trades", result
        assert {(t.price, t.qty) for t in result.trades} == {(text, text)}


# --- Coinbase: trade ids read with one msgspec call per event ---------------------------------------


@pytest.mark.parametrize(("trade_id", "want"), [
    ("1", 1), ("007", 7), ("123456789012345678", 123456789012345678), ("9223372036854775807", 2**63 - 1),
    ("9223372036854775808", None), ("1,2", None), ("", None), ("-1", None), (" 1", None), ("1e3", None),
    ("\u0661", None), ("0", 0),
])
def test_coinbase_trade_ids(trade_id: str, want: int | None) -> None:
    for position in (0, 1):
        rows = [("5", "1", "1", "2026-11-26T02:00:00Z")] * 2
        rows[position] = (trade_id, "1", "1", "2026-11-26T02:00:00Z")
        result = coinbase.parse_frame(_coinbase_frame(rows), 1)
        if want is None:
            assert result.kind == "error" and "trade_id" in result.error, result
        else:
            assert result.trades[position].trade_id == want


def test_coinbase_events_without_trades_and_several_events() -> None:
    trade: dict[str, Any] = {"trade_id": "1", "product_id": "BTC-USD", "price": "1", "size": "2", "side": "SELL",
                             "time": "2026-11-26T02:00:00Z"}
    frame = {"channel": "market_trades", "sequence_num": 9,
             "events": [{"type": "snapshot", "trades": []},
                        {"type": "update", "trades": [trade, {**trade, "trade_id": "2"}]},
                        {"type": "update", "trades": [{**trade, "trade_id": "3"}]}]}
    result = coinbase.parse_frame(json.dumps(frame), 1)
    assert (result.kind, result.sequence) == ("trades", 9)
    assert [t.trade_id for t in result.trades] == [1, 2, 3]
    frame["events"] = [{"type": "snapshot", "trades": []}]
    assert coinbase.parse_frame(json.dumps(frame), 1) == ParsedFrame("trades", (), sequence=9)
