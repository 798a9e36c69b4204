"""Issue 13: every mapper accepts exactly its venue's grammar and nothing else (regressions).

Each case below was found by probing the mappers with input the venue never sends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ticklake.exchanges.feeds.frames import FrameHandler
from ticklake.exchanges.gaps import GapTracker
from ticklake.exchanges.mappers import parser_for
from ticklake.exchanges.mappers.common import is_native_symbol
from ticklake.model import trades_topic
from ticklake.settings import ValidationSettings
from ticklake.venues import VENUES, from_native, to_native
from ticklake.venues.binance import mapper as binance
from ticklake.venues.coinbase import mapper as coinbase
from ticklake.venues.kraken import mapper as kraken
from ticklake.venues.kraken.feed import KrakenFeed
from ticklake.warehouse.validation import Validator

VALIDATOR = Validator(ValidationSettings())
NOW_US = 1_795_658_400_000_000  # received at the frames' exchange time (2026-11-26T02:00:00Z)

KR = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":%s,"qty":%s,'
      '"ord_type":"market","trade_id":1,"timestamp":"2026-11-26T02:00:00Z"}]}')


# --- Kraken v2: price and qty are JSON numbers, never strings -----------------------------------------


@pytest.mark.parametrize("text", ['"1_0"', '" 1"', '"+1"', '"1."', '".5"', '"1.5"', '"10"', '"1e5"', '"-1"'])
@pytest.mark.parametrize("field", ["price", "qty"])
def test_kraken_v2_amounts_sent_as_strings_fail_the_frame(text: str, field: str) -> None:
    """``Decimal`` read ``"1_0"`` as 10 (stored as price 10) and took ``" 1"``, ``"+1"``, ``"1."``, ``".5"``.
    Kraken v2 sends JSON numbers; a string is not its grammar."""
    frame = KR % ((text, "2") if field == "price" else ("1.5", text))
    for payload in (frame, frame.encode()):
        result = kraken.parse_frame(payload, 1)
        assert result.kind == "error" and result.trades == (), (payload, result)
        assert f"bad {field}=" in result.error
    row = KR[KR.index("[") + 1:KR.rindex("]")]
    bad = row % ((text, "1") if field == "price" else ("1", text))
    several = '{"channel":"trade","type":"update","data":[' + ",".join([row % ("1", "1")] * 2 + [bad]) + "]}"
    assert kraken.parse_frame(several, 1).kind == "error"  # the multi-trade hot path too


@pytest.mark.parametrize(("number", "text"), [("10", "10"), ("1.5", "1.5"), ("1E-8", "0.00000001"),
                                              ("2.8015E+3", "2801.5"), ("-0", "-0")])
def test_kraken_v2_json_numbers_still_read_exactly(number: str, text: str) -> None:
    result = kraken.parse_frame(KR % (number, number), 1)
    assert result.kind == "trades"
    assert (result.trades[0].price, result.trades[0].qty) == (text, text)


# --- Coinbase Advanced Trade: sequence_num is a uint64 counter ---------------------------------------

CB_TRADES = ('{"channel":"market_trades","client_id":"","timestamp":"2026-11-26T02:00:00Z","sequence_num":%s,'
             '"events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTC-USD","price":"1","size":"1",'
             '"side":"BUY","time":"2026-11-26T02:00:00Z"}]}]}')
CB_OTHERS = ['{"channel":"heartbeats","client_id":"","sequence_num":%s,"events":[]}',
             '{"channel":"subscriptions","client_id":"","sequence_num":%s,"events":[]}',
             '{"channel":"l2_data","client_id":"","sequence_num":%s,"events":[]}']


@pytest.mark.parametrize("sequence", ["-5", "-1", "1" + "0" * 39, str(2**64), "1.5", "1e3", "true", '"5"', "[]"])
@pytest.mark.parametrize("template", [CB_TRADES, *CB_OTHERS], ids=["market_trades", "heartbeats", "subscriptions",
                                                                   "l2_data"])
def test_coinbase_sequence_num_outside_uint64_fails_the_frame(template: str, sequence: str) -> None:
    """-5 and a 40-digit sequence_num were taken as the connection's counter (and faked or hid a gap)."""
    for payload in (template % sequence, (template % sequence).encode()):
        result = coinbase.parse_frame(payload, 1)
        assert (result.kind, result.trades, result.sequence) == ("error", (), None), result
        assert "sequence_num" in result.error


@pytest.mark.parametrize("sequence", ["0", "7", str(2**63), str(2**64 - 1)])
@pytest.mark.parametrize("template", [CB_TRADES, *CB_OTHERS])
def test_coinbase_sequence_num_within_uint64_is_taken(template: str, sequence: str) -> None:
    result = coinbase.parse_frame(template % sequence, 1)
    assert result.kind != "error" and result.sequence == int(sequence), result
    assert coinbase.parse_frame(template.replace(',"sequence_num":%s', ""), 1).sequence is None


# --- Kraken v1: an absurd time is dead-lettered as a time, not as the id derived from it ---------------


@pytest.mark.parametrize("when", ["10000000000000", "10000000000000.5", "4102444800.000000"])
def test_kraken_v1_absurd_time_is_dead_lettered_as_bad_timestamp(when: str) -> None:
    """v1 derives trade_id = ts_us * 1000 + index, so time "10000000000000" made an id beyond UInt64 and
    the dead letter said ``bad_trade_id``; the fault is the time."""
    frame = f'[1,[["1.5","2","{when}","b","l",""]],"trade","XBT/USD"]'
    result = kraken.parse_frame(frame, NOW_US)
    assert result.kind == "trades", result
    violation = VALIDATOR.check(result.trades[0])
    assert violation is not None and violation.rule == "bad_timestamp", violation


# --- Symbols: the venue's form, and only markets the connection subscribed to ---------------------------

BN_TRADE = '{"e":"trade","E":1,"s":%s,"t":1,"p":"1.5","q":"2","T":1795658400000,"m":true}'
BN_COMBINED = '{"stream":"btcusdt@trade","data":' + BN_TRADE + "}"
BN_AGG = '{"e":"aggTrade","E":1,"s":%s,"a":1,"p":"1.5","q":"2","f":1,"l":1,"T":1795658400000,"m":true}'
KR_ROW = ('{"symbol":%s,"side":"buy","price":1.5,"qty":2,"ord_type":"market","trade_id":%d,'
          '"timestamp":"2026-11-26T02:00:00Z"}')
CB_ROW = ('{"trade_id":"%d","product_id":%s,"price":"1","size":"1","side":"BUY","time":"2026-11-26T02:00:00Z"}')
CB_MATCH = ('{"type":"match","trade_id":1,"sequence":1,"maker_order_id":"a","taker_order_id":"b",'
            '"time":"2026-11-26T02:00:00Z","product_id":%s,"size":"2","price":"1.5","side":"buy"}')


def kr_frame(*symbols: str) -> str:
    rows = ",".join(KR_ROW % (json.dumps(symbol), index + 1) for index, symbol in enumerate(symbols))
    return '{"channel":"trade","type":"update","data":[' + rows + "]}"


def cb_frame(*symbols: str) -> str:
    rows = ",".join(CB_ROW % (index + 1, json.dumps(symbol)) for index, symbol in enumerate(symbols))
    return ('{"channel":"market_trades","client_id":"","timestamp":"2026-11-26T02:00:00Z","sequence_num":1,'
            '"events":[{"type":"update","trades":[' + rows + "]}]}")


def frames_of(venue: str, symbol: str) -> list[str]:
    """Every trade-frame layout of a venue (each hot path and its checked twin) with one market."""
    quoted = json.dumps(symbol)
    if venue == "binance":
        return [BN_TRADE % quoted, BN_COMBINED % quoted, BN_AGG % quoted]
    if venue == "kraken":
        return [kr_frame(symbol), kr_frame(symbol, symbol, symbol), kr_frame(symbol).replace("1.5", "1.5E0")]
    if venue == "okx":  # trades-all: one trade per push, on the fast path, and the same reached by the slow one
        push = OKX_PUSH % (quoted, quoted)
        return [push, push.replace('{"arg":', '{"event":null,"arg":', 1)]
    return [cb_frame(symbol), cb_frame(symbol, symbol, symbol), cb_frame(symbol).replace('"1"', '"01"', 1),
            CB_MATCH % quoted]


OKX_PUSH = ('{"arg":{"channel":"trades-all","instId":%s},"data":[{"instId":%s,"tradeId":"1","px":"1.5","sz":"2",'
            '"side":"buy","source":"0","ts":"1795658400000"}]}')


SUBSCRIBED = {"binance": frozenset({"BTCUSDT"}), "kraken": frozenset({"BTC/USD"}),
              "coinbase": frozenset({"BTC-USD"}), "okx": frozenset({"BTC-USDT"})}

BAD_FORM = [
    ("binance", "BTC/USDT"), ("binance", "btcusdt"), ("binance", "BTCUSDT\u0000"), ("binance", "BTC USDT"),
    ("binance", "BTCUSDT\n"), ("binance", "BTC-USDT"), ("binance", "BTCUSDT@trade"), ("binance", ""),
    ("kraken", "BTC/USD\u0000"), ("kraken", "btc/usd"), ("kraken", "Btc/USD"), ("kraken", "BTC-USD"),
    ("kraken", "BTC/USD/EUR"), ("kraken", " BTC/USD"), ("kraken", "BTC//USD"), ("kraken", "/USD"),
    ("kraken", "BTCUSD"), ("kraken", "BTC/\u0000"), ("kraken", "BTC/US\u200bD"), ("kraken", ""),
    ("coinbase", "btc-usd"), ("coinbase", "BTC/USD"), ("coinbase", "BTC-USD\u0000"), ("coinbase", "BTC--USD"),
    ("coinbase", "BTC-USD-X"), ("coinbase", "BTC-"), ("coinbase", "BTC_USD"), ("coinbase", "\tBTC-USD"),
    ("okx", "BTC-USDT-SWAP"), ("okx", "BTC-USD-220527"), ("okx", "btc-usdt"), ("okx", "BTC/USDT"), ("okx", ""),
]


@pytest.mark.parametrize(("venue", "native"), BAD_FORM, ids=[f"{v}:{n!r}" for v, n in BAD_FORM])
@pytest.mark.parametrize("subscribed", [False, True], ids=["unchecked", "subscribed-checked"])
def test_native_symbols_not_in_the_venue_form_are_dead_lettered_as_bad_symbol(venue: str, native: str,
                                                                                subscribed: bool) -> None:
    """Binance "BTC/USDT" became BTC//USDT; Kraken "BTC/USD\\u0000" a market the API cannot query; "btc/usd"
    a second native symbol of BTC/USD. Such trades keep no canonical symbol (never a new market) and the
    warehouse dead-letters them naming the symbol."""
    markets = SUBSCRIBED[venue] | {native} if subscribed else None  # even if it were "subscribed"
    for frame in frames_of(venue, native):
        result = parser_for(venue)(frame, NOW_US, subscribed=markets)
        assert result.kind == "trades" and result.trades, (frame, result)
        for trade in result.trades:
            assert trade.symbol == "" and trade.native_symbol.removesuffix("@aggTrade") == native
            violation = VALIDATOR.check(trade)
            assert violation is not None and violation.rule == "bad_symbol", violation


UNSUBSCRIBED = [("binance", "ETHBTC"), ("binance", "BTCUSDC"), ("kraken", "FOO/BAR"), ("kraken", "XBT/USD"),
                ("kraken", "ETH/USD"), ("coinbase", "BTC-USDX"), ("coinbase", "ETH-USD"), ("okx", "ETH-USDT"),
                ("okx", "BTC-USDC")]


@pytest.mark.parametrize(("venue", "native"), UNSUBSCRIBED)
def test_trades_of_markets_not_subscribed_are_dead_lettered_as_unsubscribed_market(venue: str, native: str) -> None:
    """Kraken FOO/BAR and Coinbase BTC-USDX were stored as new markets with candles."""
    for frame in frames_of(venue, native):
        result = parser_for(venue)(frame, NOW_US, subscribed=SUBSCRIBED[venue])
        assert result.kind == "trades" and result.trades, (frame, result)
        for trade in result.trades:
            assert trade.symbol == "" and trade.native_symbol.removesuffix("@aggTrade") == native
            violation = VALIDATOR.check(trade)
            assert violation is not None and violation.rule == "unsubscribed_market", violation
            assert native in violation.detail
        # Re-parsing a raw frame without the connection's markets checks only the form.
        assert all(t.symbol for t in parser_for(venue)(frame, 1).trades)


@pytest.mark.parametrize("venue", ["binance", "kraken", "coinbase", "okx"])
def test_trades_of_subscribed_markets_are_unchanged(venue: str) -> None:
    native = next(iter(SUBSCRIBED[venue]))
    for frame in frames_of(venue, native):
        checked = parser_for(venue)(frame, NOW_US, subscribed=SUBSCRIBED[venue])
        assert checked == parser_for(venue)(frame, NOW_US)
        assert checked.trades and all(t.symbol == from_native(venue, native) for t in checked.trades)
        assert all(VALIDATOR.check(t) is None for t in checked.trades)


def test_a_frame_mixing_markets_keeps_every_trade_and_blanks_only_the_unsubscribed() -> None:
    """A frame is kept whole: the subscribed trades go on, the others are dead-lettered, none vanish."""
    for frame, venue in ((kr_frame("BTC/USD", "FOO/BAR", "BTC/USD"), "kraken"),
                         (cb_frame("BTC-USD", "BTC-USDX", "btc-usd"), "coinbase")):
        result = parser_for(venue)(frame, NOW_US, subscribed=SUBSCRIBED[venue])
        assert [t.trade_id for t in result.trades] == [1, 2, 3]
        rules = [None if (v := VALIDATOR.check(t)) is None else v.rule for t in result.trades]
        assert rules == ([None, "unsubscribed_market", None] if venue == "kraken"
                         else [None, "unsubscribed_market", "bad_symbol"])


def test_unmappable_binance_symbol_stays_unknown_symbol() -> None:
    """The reference behaviour: a Binance symbol with no known quote asset (FOOBAR) was, and is, unknown_symbol."""
    result = binance.parse_frame(BN_TRADE % '"FOOBAR"', NOW_US, subscribed=SUBSCRIBED["binance"])
    violation = VALIDATOR.check(result.trades[0])
    assert violation is not None and violation.rule == "unknown_symbol"


@pytest.mark.parametrize(("venue", "native"), [("binance", "BTCUSDT"), ("binance", "1000SATSUSDT"),
                                               ("kraken", "BTC/USD"), ("kraken", "XBT/USD"), ("kraken", "1INCH/EUR"),
                                               ("coinbase", "BTC-USD"), ("coinbase", "00-USD")])
def test_native_symbols_in_the_venue_form(venue: str, native: str) -> None:
    assert is_native_symbol(venue, native)
    assert is_native_symbol(venue, to_native(venue, from_native(venue, native)))


def test_every_configured_market_is_in_its_venue_form() -> None:
    for venue, facts in VENUES.items():
        for symbol in facts.default_symbols:
            assert is_native_symbol(venue, to_native(venue, symbol)), (venue, symbol)


def test_feed_connections_pass_their_native_symbols_to_the_mapper() -> None:
    """Where "subscribed" comes from: each connection's own native symbols, handed to the pure mapper;
    another market's trade is published without a symbol (a dead letter) and opens no gap to backfill."""
    feed = KrakenFeed(["BTC/USD", "ETH/USD"], bus=None)  # type: ignore[arg-type]
    assert [c.subscribed for c in feed.connections] == [frozenset({"BTC/USD", "ETH/USD"})]

    published: list[Any] = []

    class Bus:
        async def publish(self, messages: list[Any]) -> None:
            published.extend(messages)

    gaps = GapTracker()
    handler = FrameHandler("kraken", parser_for("kraken"), Bus(), gaps, {})  # type: ignore[arg-type]
    row = ('{"symbol":"%s","side":"buy","price":1.5,"qty":2,"ord_type":"market","trade_id":%d,'
           '"timestamp":"2026-11-26T02:00:00Z"}')
    for trade_id in (1, 5):  # 5: a gap, were FOO/BAR tracked
        rows = ",".join(row % (symbol, trade_id) for symbol in ("BTC/USD", "FOO/BAR"))
        frame = '{"channel":"trade","type":"update","data":[' + rows + "]}"
        asyncio.run(handler.handle("c1", trade_id, 1_795_658_400_000_000, frame.encode(),
                                   feed.connections[0].subscribed))
    trades = [m.value for m in published if m.topic == trades_topic("kraken")]
    assert [(t.native_symbol, t.symbol) for t in trades] == [("BTC/USD", "BTC/USD"), ("FOO/BAR", ""),
                                                             ("BTC/USD", "BTC/USD"), ("FOO/BAR", "")]
    assert gaps.newest("FOO/BAR") is None and gaps.pending("FOO/BAR") == []
    assert gaps.pending("BTC/USD") == [(2, 4)]  # (the subscribed market's gap is tracked)
