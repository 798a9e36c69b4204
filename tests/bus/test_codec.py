"""The Kafka message schema other applications consume: JSON values, a ``ticklake-schema`` header,
and a ``BusReject`` (never an exception) for anything that is not a ticklake record."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.factories import frame, trade
from ticklake.bus.codec import REJECT_REASONS, SCHEMA_HEADER, decode, encode
from ticklake.model import BusReject, RawFrame, Trade, raw_topic, trades_topic

TRADES = trades_topic("binance")
RAW = raw_topic("binance")
TRADE_FIELDS = {"exchange", "symbol", "native_symbol", "trade_id", "price", "qty", "side", "ts_us", "received_us",
                "conn_id", "frame_seq"}
RAW_FIELDS = {"exchange", "conn_id", "frame_seq", "received_us", "payload", "error", "trade_count", "source",
              "native_symbol"}
REASONS = {"undecodable", "unknown_schema", "wrong_schema_for_topic"}

# Venues send decimals as text in many shapes; the text must come back exactly (trailing zeros, exponents).
decimal_text = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.builds(lambda whole, frac: f"{whole}.{frac}", st.integers(0, 10**30), st.from_regex(r"\A[0-9]{1,18}\Z")),
    st.from_regex(r"\A-?[0-9]{1,3}(\.[0-9]{1,8})?[eE][+-]?[0-9]{1,3}\Z"),
)
uint64 = st.integers(0, 2**64 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)

trades = st.builds(
    Trade, exchange=st.text(), symbol=st.text(), native_symbol=st.text(), trade_id=uint64, price=decimal_text,
    qty=decimal_text, side=st.sampled_from(["buy", "sell", "unknown"]), ts_us=int64, received_us=int64,
    conn_id=st.text(), frame_seq=uint64,
)
frames = st.builds(
    RawFrame, exchange=st.text(), conn_id=st.text(), frame_seq=uint64, received_us=int64, payload=st.text(),
    error=st.text(), trade_count=st.integers(0, 10**6), source=st.sampled_from(["ws", "rest"]),
    native_symbol=st.text(),
)


def schema_of(headers: Any) -> Any:
    return dict(headers)[SCHEMA_HEADER]


def reject(topic: str, value: bytes | str | None, schema: bytes | None = b"trade.v1", key: bytes = b"BTC/USDT"
           ) -> BusReject:
    headers = [] if schema is None else [(SCHEMA_HEADER, schema)]
    result = decode(topic, key, value, headers)
    assert isinstance(result, BusReject), result
    return result


# --- round trips ---------------------------------------------------------------------------------
@given(trades)
def test_any_trade_round_trips_exactly(original: Trade) -> None:
    value, headers = encode(original)
    assert decode(trades_topic("any"), original.symbol.encode(), value, headers) == original


@given(frames)
def test_any_raw_frame_round_trips_exactly(original: RawFrame) -> None:
    value, headers = encode(original)
    assert decode(raw_topic("any"), b"conn", value, headers) == original


def test_round_trip_with_header_and_value_types_other_clients_produce() -> None:
    # Other clients may hand headers as a dict and values as str: same record.
    original = trade(7, price="64123.10000000", qty="1e-8")
    value, _headers = encode(original)
    assert decode(TRADES, "BTC/USDT", value.decode(), {SCHEMA_HEADER: "trade.v1"}) == original


# --- the documented wire format --------------------------------------------------------------------
def test_a_trade_is_a_json_object_with_the_documented_fields_and_header() -> None:
    original = trade(2**63 + 11, price="64123.10", qty="0.00100", side="sell", symbol="ETH/USDT",
                     conn_id="c-1", frame_seq=42)
    value, headers = encode(original)
    assert [(name, bytes(v) if v is not None else None) for name, v in headers] == [(SCHEMA_HEADER, b"trade.v1")]
    document = json.loads(value.decode("utf-8"))
    assert set(document) == TRADE_FIELDS
    assert document == {
        "exchange": "binance", "symbol": "ETH/USDT", "native_symbol": "ETHUSDT", "trade_id": 2**63 + 11,
        "price": "64123.10", "qty": "0.00100", "side": "sell", "ts_us": original.ts_us,
        "received_us": original.received_us, "conn_id": "c-1", "frame_seq": 42,
    }
    # Exact decimals travel as JSON strings (a JSON number would lose "64123.10"'s trailing zero).
    assert '"price":"64123.10"' in value.decode()


def test_a_raw_frame_is_a_json_object_with_the_documented_fields_and_header() -> None:
    original = RawFrame("kraken", "conn-9", 3, 1_767_225_600_000_123, '{"channel":"trade"} ✓', "bad price", 2,
                        "rest", "XBT/USD")
    value, headers = encode(original)
    assert schema_of(headers) == b"raw.v1"
    document = json.loads(value)
    assert set(document) == RAW_FIELDS
    assert document == {"exchange": "kraken", "conn_id": "conn-9", "frame_seq": 3,
                        "received_us": 1_767_225_600_000_123, "payload": '{"channel":"trade"} ✓',
                        "error": "bad price", "trade_count": 2, "source": "rest", "native_symbol": "XBT/USD"}


@given(trades)
def test_every_encoded_trade_is_valid_utf8_json_another_app_can_read(original: Trade) -> None:
    value, _headers = encode(original)
    document = json.loads(value.decode("utf-8"))
    assert document["trade_id"] == original.trade_id and document["price"] == original.price
    assert document["symbol"] == original.symbol


def test_a_reader_accepts_added_fields_and_missing_optional_ones() -> None:
    # A version changes only when a field changes meaning: an added field keeps trade.v1 readable.
    document = json.loads(encode(trade(5))[0])
    document["venue_flags"] = {"maker": True}
    assert decode(TRADES, b"BTC/USDT", json.dumps(document).encode(), [(SCHEMA_HEADER, b"trade.v1")]) == trade(5)
    # A producer that omits the trace fields (conn_id, frame_seq) still yields a trade.
    minimal = {k: v for k, v in document.items() if k not in {"conn_id", "frame_seq", "venue_flags"}}
    decoded = decode(TRADES, b"BTC/USDT", json.dumps(minimal).encode(), [(SCHEMA_HEADER, b"trade.v1")])
    assert isinstance(decoded, Trade) and decoded.trade_id == 5 and decoded.conn_id == "" and decoded.frame_seq == 0


# --- poison messages -----------------------------------------------------------------------------
def test_invalid_json_is_undecodable_and_kept_whole() -> None:
    result = reject(TRADES, b'{"exchange": "binance", "trade_id": ')
    assert result.reason == "undecodable"
    assert result.value == '{"exchange": "binance", "trade_id": '
    assert result.key == "BTC/USDT"
    assert json.loads(result.headers) == [[SCHEMA_HEADER, "trade.v1"]]
    assert result.detail


def test_a_missing_schema_header_is_an_unknown_schema() -> None:
    value, _ = encode(trade(1))
    result = reject(TRADES, value, schema=None)
    assert result.reason == "unknown_schema" and SCHEMA_HEADER in result.detail
    assert result.value == value.decode() and json.loads(result.headers) == []


def test_an_empty_schema_header_is_an_unknown_schema() -> None:
    value, _ = encode(trade(1))
    result = decode(TRADES, b"k", value, [("other", b"x"), (SCHEMA_HEADER, None)])
    assert isinstance(result, BusReject) and result.reason == "unknown_schema"
    assert json.loads(result.headers) == [["other", "x"], [SCHEMA_HEADER, ""]]


def test_a_newer_version_is_an_unknown_schema_not_a_guess() -> None:
    value, _ = encode(trade(1))
    result = reject(TRADES, value, schema=b"trade.v2")
    assert result.reason == "unknown_schema"
    assert "trade.v2" in result.detail and "trade.v1" in result.detail
    assert result.value == value.decode()
    raw_value, _ = encode(frame("{}"))
    assert reject(RAW, raw_value, schema=b"raw.v2").reason == "unknown_schema"


def test_a_record_on_the_wrong_topic_is_rejected_as_such() -> None:
    raw_value, raw_headers = encode(frame('{"e":"trade"}'))
    on_trades = decode(TRADES, b"conn", raw_value, raw_headers)
    assert isinstance(on_trades, BusReject)
    assert on_trades.reason == "wrong_schema_for_topic" and "raw.v1" in on_trades.detail and TRADES in on_trades.detail
    assert on_trades.value == raw_value.decode()
    trade_value, trade_headers = encode(trade(1))
    on_raw = decode(RAW, b"BTC/USDT", trade_value, trade_headers)
    assert isinstance(on_raw, BusReject) and on_raw.reason == "wrong_schema_for_topic"


def test_wrong_field_types_are_undecodable_with_the_field_named() -> None:
    good = json.loads(encode(trade(3))[0])
    cases = {
        "price": 100.5,  # a float would not be exact
        "trade_id": "3",
        "ts_us": 1.5,
        "side": "hold",
        "symbol": None,
    }
    for field, bad in cases.items():
        text = json.dumps({**good, field: bad})
        result = reject(TRADES, text.encode())
        assert result.reason == "undecodable", field
        assert field in result.detail, (field, result.detail)
        assert result.value == text
    missing = json.dumps({k: v for k, v in good.items() if k != "qty"})
    result = reject(TRADES, missing.encode())
    assert result.reason == "undecodable" and "qty" in result.detail


def test_json_that_is_not_an_object_is_undecodable() -> None:
    for text in (b"[]", b"null", b'"trade"', b"42", b"", b"[" * 10_000):
        assert reject(TRADES, text).reason == "undecodable", text[:10]
    assert reject(RAW, b"[1,2]", schema=b"raw.v1").reason == "undecodable"


def test_non_utf8_bytes_are_undecodable_and_kept_as_text() -> None:
    value = b'{"exchange":"bin\xff\xfeance"}'
    result = decode(TRADES, b"\xc3\x28", value, [(SCHEMA_HEADER, b"trade.v1"), ("x-bin", b"\x80abc")])
    assert isinstance(result, BusReject) and result.reason == "undecodable"
    assert result.value == value.decode("utf-8", "replace")
    assert result.key == b"\xc3\x28".decode("utf-8", "replace")
    assert json.loads(result.headers) == [[SCHEMA_HEADER, "trade.v1"], ["x-bin", "\ufffdabc"]]


def test_a_tombstone_is_a_reject() -> None:
    result = decode(TRADES, b"BTC/USDT", None, [(SCHEMA_HEADER, b"trade.v1")])
    assert isinstance(result, BusReject) and result.reason == "undecodable" and result.value == ""
    assert decode(TRADES, None, None, None) == BusReject("", "[]", "", "unknown_schema",
                                                        f"no {SCHEMA_HEADER} header (expected trade.v1)")


header_values = st.one_of(st.none(), st.binary(max_size=20), st.sampled_from([b"trade.v1", b"raw.v1", b"trade.v2"]))
headers = st.one_of(
    st.none(),
    st.lists(st.tuples(st.one_of(st.text(max_size=20), st.just(SCHEMA_HEADER)), header_values), max_size=4),
)
values = st.one_of(
    st.none(), st.binary(max_size=300),
    trades.map(lambda t: encode(t)[0]), frames.map(lambda f: encode(f)[0]),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                 lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20
                 ).map(lambda doc: json.dumps(doc).encode()),
)


@given(topic=st.sampled_from([TRADES, RAW, "anything"]), key=st.one_of(st.none(), st.binary(max_size=20)),
       value=values, headers=headers)
def test_decode_never_raises_and_keeps_what_it_rejects(topic: str, key: bytes | None, value: bytes | None,
                                                       headers: list[tuple[str, bytes | None]] | None) -> None:
    result = decode(topic, key, value, headers)
    assert isinstance(result, Trade | RawFrame | BusReject)
    if isinstance(result, BusReject):
        assert result.reason in REASONS and result.detail
        assert result.value == (value or b"").decode("utf-8", "replace")
        assert result.key == (key or b"").decode("utf-8", "replace")
        assert len(json.loads(result.headers)) == len(headers or [])
    else:
        # Only a record carrying the schema its topic expects is ever accepted.
        expected = b"raw.v1" if topic.endswith(".raw") else b"trade.v1"
        schemas = [v for name, v in (headers or []) if name == SCHEMA_HEADER]
        assert schemas and schemas[-1] == expected
        assert isinstance(result, RawFrame if expected == b"raw.v1" else Trade)


def test_reject_reasons_are_the_ones_decode_gives() -> None:
    """What the rejected-messages metric starts at zero per topic (tests above reach each reason)."""
    assert set(REJECT_REASONS) == REASONS and len(REJECT_REASONS) == len(REASONS)
