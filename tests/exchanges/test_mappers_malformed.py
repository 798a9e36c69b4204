"""Malformed input: every bad frame gives ``kind="error"`` with a reason naming the field; nothing raises."""

from __future__ import annotations

import pytest

from ticklake.exchanges.mappers import parser_for
from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.venues.binance import mapper as binance
from ticklake.venues.coinbase import mapper as coinbase
from ticklake.venues.kraken import mapper as kraken

BN = '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":%s,"p":%s,"q":%s,"T":%s,"m":%s}}'
KR = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":%s,"price":%s,"qty":%s,'
      '"ord_type":"market","trade_id":%s,"timestamp":%s}]}')
CB = ('{"channel":"market_trades","client_id":"","timestamp":"2026-11-26T02:00:00Z","sequence_num":7,"events":'
      '[{"type":"update","trades":[{"trade_id":%s,"product_id":"BTC-USD","price":%s,"size":%s,"side":%s,'
      '"time":%s}]}]}')
OKX = ('{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1.5",'
       '"sz":"2","side":"buy","source":"0","ts":"1795658400000"}]}')
CBX = ('{"type":"match","trade_id":%s,"sequence":1,"maker_order_id":"a","taker_order_id":"b",'
       '"time":%s,"product_id":"BTC-USD","size":%s,"price":%s,"side":%s}')
TS = '"2026-11-26T02:00:00.5Z"'


def bn(t: str = "1", p: str = '"1.5"', q: str = '"2"', ts: str = "1795658400000", m: str = "true") -> str:
    return BN % (t, p, q, ts, m)


def kr(side: str = '"buy"', price: str = "1.5", qty: str = "2", trade_id: str = "1", ts: str = TS) -> str:
    return KR % (side, price, qty, trade_id, ts)


def cb(trade_id: str = '"1"', price: str = '"1.5"', size: str = '"2"', side: str = '"BUY"', ts: str = TS) -> str:
    return CB % (trade_id, price, size, side, ts)


def cbx(trade_id: str = "1", ts: str = TS, size: str = '"2"', price: str = '"1.5"', side: str = '"buy"') -> str:
    return CBX % (trade_id, ts, size, price, side)


def test_templates_are_valid_when_unmodified() -> None:
    assert binance.parse_frame(bn(), 1).kind == "trades"
    assert kraken.parse_frame(kr(), 1).kind == "trades"
    assert coinbase.parse_frame(cb(), 1).kind == "trades"
    assert coinbase.parse_frame(cbx(), 1).kind == "trades"


GARBAGE: list[bytes | str] = [
    b"", "", b"\xff\xfe\x00garbage", b"\x00", b"{", b"[", b'{"stream":', b"null", b"42", b'"text"', b"[]", b"{}",
    b"\x80\x81\x82", "\ud800", b"{" * 10_000, b"[" * 10_000, b"not json at all",
]


@pytest.mark.parametrize("venue", ["binance", "kraken", "coinbase", "okx"])
@pytest.mark.parametrize("payload", GARBAGE, ids=lambda p: repr(p)[:20])
def test_garbage_never_raises(venue: str, payload: bytes | str) -> None:
    result = parser_for(venue)(payload, 1)
    assert result.kind in ("error", "other")
    assert result.trades == ()
    if result.kind == "error":
        assert result.error


@pytest.mark.parametrize("venue", ["binance", "kraken", "coinbase", "okx"])
def test_empty_and_truncated_frames_are_errors(venue: str) -> None:
    parse = parser_for(venue)
    assert "empty frame" in parse(b"", 1).error
    full = {"binance": bn(), "kraken": kr(), "coinbase": cb(), "okx": OKX}[venue].encode()
    for cut in range(1, len(full)):
        result = parse(full[:cut], 1)
        assert result.kind == "error", full[:cut]
        assert "invalid JSON" in result.error


@pytest.mark.parametrize("venue", ["binance", "kraken", "coinbase", "okx"])
def test_non_text_payload_types_are_errors(venue: str) -> None:
    for payload in (None, 42, 1.5, ["x"]):
        result = parser_for(venue)(payload, 1)  # type: ignore[arg-type]
        assert result.kind == "error"
        assert "not bytes or str" in result.error


CASES: list[tuple[str, str, str]] = [
    # (venue, frame, words the error must contain)
    ("binance", bn(p='"+1.5"'), "p="),
    ("binance", bn(p='"NaN"'), "p="),
    ("binance", bn(p='"abc"'), "p="),
    ("binance", bn(p='"1e5"'), "p="),
    ("binance", bn(p='""'), "p="),
    ("binance", bn(p='" 1.5"'), "p="),
    ("binance", bn(p="1.5"), "$.p"),
    ("binance", bn(q='"--2"'), "q="),
    ("binance", bn(q='"1.2.3"'), "q="),
    ("binance", bn(t='"1"'), "$.t"),
    ("binance", bn(t="-1"), "$.t"),
    ("binance", bn(t="9223372036854775808"), "$.t"),
    ("binance", bn(m='"yes"'), "$.m"),
    ("binance", bn(ts="0"), "$.T"),
    ("binance", bn(ts="100000000000000000"), "$.T"),
    ("binance", bn(ts='"1795658400000"'), "$.T"),
    ("binance", '{"e":"trade","s":"BTCUSDT","t":1,"q":"1","T":1,"m":true}', "`p`"),
    ("binance", '{"stream":"x@trade","data":{"e":"aggTrade","s":"X","p":"1","q":"1","T":1,"m":true}}', "`a`"),
    ("binance", '{"stream":"x@trade","data":[1,2]}', "data is not an object"),
    ("kraken", kr(price='"NaN"'), "price="),
    ("kraken", kr(price='"abc"'), "price="),
    ("kraken", kr(price="true"), "price="),
    ("kraken", kr(price="[1]"), "price="),
    ("kraken", kr(price="1e-999999999"), "price="),  # would be a gigabyte written out
    ("kraken", kr(qty="1e999999999"), "qty="),
    ("kraken", kr(side='"b"'), "side"),
    ("kraken", kr(trade_id='"1"'), "trade_id"),
    ("kraken", kr(trade_id="1.5"), "trade_id"),
    ("kraken", kr(ts='"yesterday"'), "timestamp"),
    ("kraken", kr(ts='"2026-11-26T02:00:00"'), "timestamp"),
    ("kraken", kr(ts='"2026-11-26T02:00:00xZ"'), "timestamp"),
    ("kraken", kr(ts='"2026-11-26T02:00:00.Z"'), "timestamp"),
    ("kraken", kr(ts='"2026-02-30T02:00:00Z"'), "timestamp"),
    ("kraken", kr(ts="1795658400"), "timestamp"),
    ("kraken", '{"channel":"trade","type":"update","data":{"symbol":"BTC/USD"}}', "data"),
    ("kraken", '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":1}]}', "qty"),
    ("kraken", '[1,[["1.5","2","1618678142.557535","x","l",""]],"trade","XBT/USD"]', "side"),
    ("kraken", '[1,[["+1.5","2","1618678142.557535","b","l",""]],"trade","XBT/USD"]', "price="),
    ("kraken", '[1,[["1.5","abc","1618678142.557535","b","l",""]],"trade","XBT/USD"]', "volume="),
    ("kraken", '[1,[["1.5","2","yesterday","b","l",""]],"trade","XBT/USD"]', "time="),
    ("kraken", '[1,[["1.5","2","-1618678142.5","b","l",""]],"trade","XBT/USD"]', "time="),
    ("kraken", '[1,[["1.5","2"]],"trade","XBT/USD"]', "2 fields"),
    ("kraken", '[1,[[1.5,"2","1618678142.557535","b","l",""]],"trade","XBT/USD"]', "$[1][0][0]"),
    ("kraken", '[1,"oops","trade","XBT/USD"]', "$[1]"),
    ("coinbase", cb(price='"1.5.1"'), "price="),
    ("coinbase", cb(price='"NaN"'), "price="),
    ("coinbase", cb(price='"1,5"'), "price="),
    ("coinbase", cb(price="1.5"), "price"),
    ("coinbase", cb(trade_id="1"), "trade_id"),
    ("coinbase", cb(trade_id='"12a"'), "trade_id="),
    ("coinbase", cb(trade_id='"-12"'), "trade_id="),
    ("coinbase", cb(trade_id='"+12"'), "trade_id="),
    ("coinbase", cb(trade_id='"1_2"'), "trade_id="),
    ("coinbase", cb(trade_id='"\\u0661\\u0662"'), "trade_id="),
    ("coinbase", cb(trade_id='"99999999999999999999"'), "trade_id="),
    ("coinbase", cb(side='"buy"'), "side"),
    ("coinbase", cb(ts='"2026-11-26"'), "timestamp"),
    ("coinbase", cb(ts='"2026-11-26T25:00:00Z"'), "timestamp"),
    ("coinbase", cb(ts='"2026-11-26T02:00:00xZ"'), "timestamp"),
    ("coinbase", cbx(ts='"2026-11-26 02:00:00Z"'), "timestamp"),
    ("coinbase", '{"channel":"market_trades","sequence_num":1,"events":[{"trades":[{"trade_id":"1"}]}]}',
     "product_id"),
    ("coinbase", '{"channel":"market_trades","sequence_num":1,"events":"none"}', "events"),
    ("coinbase", cbx(price='"- 1"'), "price="),
    ("coinbase", cbx(size='"abc"'), "size="),
    ("coinbase", cbx(trade_id='"10"'), "trade_id"),
    ("coinbase", cbx(side='"BUY"'), "side"),
    ("coinbase", cbx(ts='"soon"'), "timestamp"),
    ("coinbase", '{"type":"match","trade_id":1}', "product_id"),
]


@pytest.mark.parametrize(("venue", "frame", "words"), CASES, ids=[f"{v}:{f[-60:]}" for v, f, _ in CASES])
def test_bad_fields_are_errors_naming_the_field(venue: str, frame: str, words: str) -> None:
    for payload in (frame, frame.encode()):
        result = parser_for(venue)(payload, 1, "c", 1)
        assert result.kind == "error", result
        assert result.trades == ()
        assert words in result.error, result.error


def test_zero_price_is_well_formed_and_left_to_the_warehouse() -> None:
    """Zero is numeric: the mapper keeps the trade and the warehouse's validation dead-letters it."""
    for venue, frame in (("binance", bn(p='"0"')), ("kraken", kr(price="0")), ("kraken", kr(qty="0.0e5")),
                         ("coinbase", cb(size='"0.000"')), ("coinbase", cbx(price='"0"'))):
        result = parser_for(venue)(frame, 1)
        assert result.kind == "trades", (venue, result)
        assert "0" in (result.trades[0].price, result.trades[0].qty) or result.trades[0].qty == "0.000"


def test_values_with_spaces_cannot_pass_as_several_values() -> None:
    """The hot paths check a frame's values joined by spaces; a space inside a value must not fool that."""
    row = '{"trade_id":"%s","product_id":"BTC-USD","price":"%s","size":"1","side":"BUY","time":' + TS + "}"
    cb_frame = ('{"channel":"market_trades","sequence_num":3,"events":[{"type":"update","trades":['
                + row % ("1", "1 1 2026-11-26T02:00:00.5Z 1") + "," + row % ("2", "1") + "]}]}")
    assert coinbase.parse_frame(cb_frame, 1).kind == "error"
    kr_frame = ('[1,[["1 1","1","1618678142.5","b","l",""],["1","1","1618678142.5","b","l",""],'
                '["1","1","1618678142.5","b","l",""]],"trade","XBT/USD"]')
    assert kraken.parse_frame(kr_frame, 1).kind == "error"


def test_one_bad_trade_fails_the_whole_frame_rather_than_dropping_it() -> None:
    """A frame is kept or rejected whole: a silently dropped trade would be an invisible gap."""
    good = '{"trade_id":"1","product_id":"BTC-USD","price":"1","size":"1","side":"BUY","time":' + TS + "}"
    bad = '{"trade_id":"2","product_id":"BTC-USD","price":"1,5","size":"1","side":"BUY","time":' + TS + "}"
    frame = '{"channel":"market_trades","sequence_num":3,"events":[{"type":"update","trades":[' + good + "," + bad
    frame += "]}]}"
    result = coinbase.parse_frame(frame, 1)
    assert (result.kind, result.trades, result.sequence) == ("error", (), 3)
    assert "price='1,5'" in result.error


@pytest.mark.parametrize(("module", "body", "words"), [
    (binance, b'{"code":-1121,"msg":"Invalid symbol."}', "Invalid symbol."),
    (binance, b"[{]", "invalid JSON"),
    (binance, b'[{"id":1,"price":"1e5","qty":"1","time":1,"isBuyerMaker":true}]', "price="),
    (binance, b'[{"id":1,"price":"1","qty":"1","time":1,"isBuyerMaker":"no"}]', "isBuyerMaker"),
    (binance, b"", "invalid JSON"),
    (kraken, b'{"error":["EQuery:Unknown asset pair"]}', "Unknown asset pair"),
    (kraken, b'{"error":[],"result":{"A":[],"B":[],"last":"1"}}', "one pair"),
    (kraken, b'{"error":[],"result":{"A":[]}}', "last"),
    (kraken, b'{"error":[],"result":{"A":[["1","1",1.5,"x","m","",1]],"last":"1"}}', "side"),
    (kraken, b'{"error":[],"result":{"A":[["1","1",1.5,"b","m","",true]],"last":"1"}}', "trade_id"),
    (kraken, b'{"error":[],"result":{"A":[["1","1","1.5","b","m","",1]],"last":"1"}}', "time"),
    (kraken, b'{"error":[],"result":{"A":[["1","1",1e-999999999,"b","m","",1]],"last":"1"}}', "time"),
    (kraken, b'{"error":[],"result":{"A":[["1","NaN",1.5,"b","m","",1]],"last":"1"}}', "volume"),
    (kraken, b'{"error":[],"result":{"A":[["1","1",1.5]],"last":"1"}}', "expected [price"),
    (kraken, b"[1]", "expected an object"),
    (coinbase, b'{"message":"NotFound"}', "NotFound"),
    (coinbase, b'[{"time":"x","trade_id":1,"price":"1","size":"1","side":"buy"}]', "timestamp"),
    (coinbase, b'[{"time":"2020-03-20T00:36:59.860Z","trade_id":1,"price":"1","size":"1","side":"BUY"}]', "side"),
    (coinbase, "\ud800", "invalid JSON"),
])
def test_rest_bodies_raise_only_malformed_response(module: object, body: bytes | str, words: str) -> None:
    with pytest.raises(MalformedResponse, match=None) as caught:
        module.parse_rest_trades(body, "BTC/USD" if module is kraken else "BTC-USD", 1)  # type: ignore[attr-defined]
    assert words in str(caught.value)


@pytest.mark.parametrize(("venue", "frame"), [
    ("binance", bn(p='"-1.5"', q='"0"')),
    ("kraken", kr(price="-1.5", qty="0")),
    ("coinbase", cb(price='"-1.5"')),
])
def test_zero_and_negative_amounts_pass_through_for_the_warehouse_to_dead_letter(venue: str, frame: str) -> None:
    """Well-formed but invalid values are the warehouse's to judge: it dead-letters the trade with its
    rule and raw frame, and the frame's other trades are not lost with it."""
    result = parser_for(venue)(frame, 1)
    assert result.kind == "trades" and result.error == ""
    assert result.trades[0].price == "-1.5"
