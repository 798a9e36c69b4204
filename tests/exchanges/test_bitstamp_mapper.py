"""Bitstamp v2: the mapper's grammar (symbols in Bitstamp's lower-case form, subscribed markets only, exact
texts, taker sides, control events) and the real recording (cryptofeed, 2022) read field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ticklake.exchanges.mappers.common import MalformedResponse, is_native_symbol
from ticklake.exchanges.recording import read_session
from ticklake.settings import ValidationSettings
from ticklake.venues import VENUES, from_native, to_native
from ticklake.venues.bitstamp import mapper
from ticklake.warehouse.validation import Validator

VALIDATOR = Validator(ValidationSettings())
NOW_US = 1_795_658_400_000_000
TRADE = ('{"data":{"id":7,"timestamp":"1795658400","amount":2.0,"amount_str":"2.00000000","price":1.5,'
         '"price_str":"1.50","type":%d,"microtimestamp":"1795658400000123","buy_order_id":2,"sell_order_id":1},'
         '"channel":"live_trades_%s","event":"trade"}')
# The same event with its fields in another order: not the fast path's usual layout, the same result.
REORDERED = ('{"event":"trade","channel":"live_trades_%s","data":{"microtimestamp":"1795658400000123","type":%d,'
             '"price_str":"1.50","amount_str":"2.00000000","id":7}}')


def frames(native: str, side: int = 0) -> list[str]:
    return [TRADE % (side, native), REORDERED % (native, side)]


def test_a_trade_is_read_exactly_with_the_taker_side() -> None:
    for side, name in ((0, "buy"), (1, "sell")):
        for frame in frames("btcusd", side):
            for payload in (frame, frame.encode()):
                [trade] = mapper.parse_frame(payload, NOW_US, "c", 3, subscribed=frozenset({"btcusd"})).trades
                assert (trade.symbol, trade.native_symbol, trade.trade_id, trade.price, trade.qty, trade.side,
                        trade.ts_us) == ("BTC/USD", "btcusd", 7, "1.50", "2.00000000", name, 1795658400000123)
                assert (trade.received_us, trade.conn_id, trade.frame_seq) == (NOW_US, "c", 3)
                assert VALIDATOR.check(trade) is None


@pytest.mark.parametrize("native", ["BTCUSD", "Btcusd", "btc_usd", "btc-usd", "btc/usd", "btcusd\u0000", " btcusd",
                                    "btcus\u200bd", ""])
@pytest.mark.parametrize("checked", [False, True], ids=["unchecked", "subscribed-checked"])
def test_symbols_not_in_bitstamps_form_are_dead_lettered_as_bad_symbol(native: str, checked: bool) -> None:
    """Upper case would store BTC/USD under a second native symbol; other separators are not Bitstamp's."""
    subscribed = frozenset({"btcusd", native}) if checked else None
    for frame in frames(json.dumps(native)[1:-1]):
        result = mapper.parse_frame(frame, NOW_US, subscribed=subscribed)
        assert result.kind == "trades", result
        [trade] = result.trades
        assert trade.symbol == "" and trade.native_symbol == native
        violation = VALIDATOR.check(trade)
        assert violation is not None and violation.rule == "bad_symbol", violation


@pytest.mark.parametrize("native", ["ethusd", "btceur", "foobar"])
def test_trades_of_markets_not_subscribed_are_dead_lettered(native: str) -> None:
    for frame in frames(native):
        [trade] = mapper.parse_frame(frame, NOW_US, subscribed=frozenset({"btcusd"})).trades
        assert trade.symbol == ""
        violation = VALIDATOR.check(trade)
        assert violation is not None
        assert violation.rule == ("unknown_symbol" if native == "foobar" else "unsubscribed_market")
        assert mapper.parse_frame(frame, NOW_US).trades[0].symbol == ("" if native == "foobar"
                                                                      else from_native("bitstamp", native))


def test_every_default_market_is_spelled_in_lower_case_and_maps_back() -> None:
    for symbol in VENUES["bitstamp"].default_symbols:
        native = to_native("bitstamp", symbol)
        assert native == native.lower() and "/" not in native
        assert is_native_symbol("bitstamp", native) and from_native("bitstamp", native) == symbol
    assert [to_native("bitstamp", s) for s in ("USDT/USD", "USDC/USDT", "ETH/BTC")] == ["usdtusd", "usdcusdt", "ethbtc"]
    assert from_native("bitstamp", "usdtusd") == "USDT/USD"


@pytest.mark.parametrize(("bad", "why"), [
    ('"price_str":"1.50"', '"price_str":"1.5e0"'), ('"price_str":"1.50"', '"price_str":"+1.50"'),
    ('"price_str":"1.50"', '"price_str":1.5'), ('"amount_str":"2.00000000"', '"amount_str":"2,0"'),
    ('"type":%d', '"type":"0"'), ('"type":%d', '"type":true'), ('"type":%d', '"type":2'),
    ('"id":7', '"id":-7'), ('"id":7', '"id":"7"'), ('"id":7', f'"id":{2**63}'), ('"id":7', '"id":7.0'),
    ('"microtimestamp":"1795658400000123"', '"microtimestamp":1795658400000123'),
    ('"microtimestamp":"1795658400000123"', '"microtimestamp":"1795658400.000123"'),
    ('"microtimestamp":"1795658400000123"', '"microtimestamp":"\u0661795658400000123"'),
    ('"microtimestamp":"1795658400000123"', '"microtimestamp":"17956584000001230"'),
])
def test_fields_outside_the_grammar_fail_the_frame(bad: str, why: str) -> None:
    for template in (TRADE, REORDERED):
        frame = template.replace(bad, why)
        frame = frame % ((0, "btcusd") if template is TRADE else ("btcusd", 0)) if "%d" in frame else \
            frame.replace("%s", "btcusd")
        for payload in (frame, frame.encode()):
            result = mapper.parse_frame(payload, NOW_US)
            assert result.kind == "error" and result.trades == (), (frame, result)


@pytest.mark.parametrize(("frame", "kind"), [
    ('{"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}', "subscribed"),
    ('{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}', "heartbeat"),
    ('{"event":"bts:request_reconnect","channel":"","data":""}', "shutdown"),
    ('{"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription string."}}', "error"),
    ('{"event":"bts:unsubscription_succeeded","channel":"live_trades_btcusd","data":{}}', "other"),
    ('{"data":{"bids":[],"asks":[]},"channel":"order_book_btcusd","event":"data"}', "other"),
    ('{"data":{"id":1,"amount_str":"1","price_str":"1","type":0,"microtimestamp":"1"},'
     '"channel":"private-my_trades_btcusd-1","event":"trade"}', "other"),
    ('{"channel":"live_trades_btcusd","data":{}}', "error"),
    ('{"event":5}', "error"), ("[1]", "error"), ("", "error"), ("\xff", "error"), ('{"event":"trade"', "error"),
])
def test_control_events_and_bad_frames(frame: str, kind: str) -> None:
    result = mapper.parse_frame(frame, NOW_US)
    assert result.kind == kind and result.sequence is None, result
    assert mapper.parse_frame(frame.encode("utf-8", "surrogateescape"), NOW_US).kind == kind
    if frame.startswith('{"event":"bts:error"'):
        assert result.error == "bitstamp bts:error None: Bad subscription string."


def test_rest_pages_and_their_errors() -> None:
    body = b'[{"date":"1795658460","tid":"9","amount":"0.5","type":"1","price":"91240.01"}]'
    [trade] = mapper.parse_rest_trades(body, "btcusd", NOW_US, conn_id="r", frame_seq=2)
    assert (trade.symbol, trade.trade_id, trade.side, trade.ts_us, trade.frame_seq) == (
        "BTC/USD", 9, "sell", 1795658460_000000, 2)
    assert mapper.parse_rest_trades(b"[]", "btcusd", NOW_US) == ()
    with pytest.raises(MalformedResponse, match=r"404\.002.*Invalid market symbol"):
        mapper.parse_rest_trades(b'{"status":"error","reason":"Invalid market symbol","code":"404.002"}', "x", 1)
    for row, field in (('"date":"1795658460.5"', "date"), ('"tid":"-9"', "tid"), ('"type":"2"', "type"),
                       ('"price":"1e3"', "price"), ('"amount":"0.5 "', "amount"), ('"tid":9', "tid")):
        name = row.split(":")[0]
        bad = body.decode().replace(next(p for p in body.decode()[2:-2].split(",") if p.startswith(name)), row)
        with pytest.raises(MalformedResponse, match=field):
            mapper.parse_rest_trades(bad, "btcusd", NOW_US)
    for garbage in (b"", b"not json", b'{"a":1}', b"[1]", b"null"):
        with pytest.raises(MalformedResponse):
            mapper.parse_rest_trades(garbage, "btcusd", NOW_US)


def test_the_recording_field_by_field(cryptofeed_dir: Path) -> None:
    """Every trade of BITSTAMP.ws.1.0 against the stdlib's reading of its text, and ``type`` as the taker's
    side: the order that came later (the larger order id) is the taker, and it is the buy order exactly
    when ``type`` is 0."""
    seen = 0
    for seq, frame in enumerate(read_session(cryptofeed_dir / "BITSTAMP.ws.1.0"), 1):
        result = mapper.parse_frame(frame.payload, frame.received_us, frame.conn_id, seq)
        assert result.kind != "error", frame.payload
        message = json.loads(frame.payload)
        if message.get("event") != "trade":
            assert not result.trades
            continue
        data = message["data"]
        [trade] = result.trades
        assert (trade.native_symbol, trade.symbol, trade.trade_id, trade.price, trade.qty, trade.ts_us) == (
            message["channel"].removeprefix("live_trades_"), "ETH/USD", data["id"], data["price_str"],
            data["amount_str"], int(data["microtimestamp"]))
        taker_bought = data["buy_order_id"] > data["sell_order_id"]
        assert trade.side == ("buy" if taker_bought else "sell") == ("buy" if data["type"] == 0 else "sell")
        seen += 1
    assert seen == 10
