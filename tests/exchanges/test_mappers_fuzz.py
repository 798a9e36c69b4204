"""Property tests: ``parse_frame`` never raises, whatever it is given, and what it returns is sane.

Also: each venue's optimistic hot path agrees exactly with its field-by-field checked path.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticklake.exchanges import registry
from ticklake.exchanges.mappers import parser_for
from ticklake.exchanges.mappers.common import MAX_TRADE_ID, is_decimal_text
from ticklake.model import ParsedFrame
from ticklake.venues import NAMES
from ticklake.venues.binance import mapper as binance
from ticklake.venues.coinbase import mapper as coinbase
from ticklake.venues.kraken import mapper as kraken

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VENUES = NAMES  # every registered venue; each has fixtures/<venue>.*

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["trade", "aggTrade", "market_trades", "heartbeat", "match", "snapshot", "update", "b",
                       "s", "BUY", "SELL", "1.5", "-1", "NaN", "2026-11-26T02:00:00Z", "BTC/USD", "XBT/USD", "1 1",
                       "1 1 2026-11-26T02:00:00Z 1", "1e-5", "0.0", "1618678142.5"]),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)

FRAMES: dict[str, list[Any]] = {
    venue: [json.loads(line) for line in (FIXTURES / f"{venue}.frames.jsonl").read_bytes().splitlines()]
    for venue in VENUES
}


def _check_sane(result: ParsedFrame, venue: str) -> None:
    assert isinstance(result, ParsedFrame)
    assert result.kind in ("trades", "heartbeat", "subscribed", "shutdown", "error", "ping", "other")
    if result.kind == "error":
        assert result.error and result.trades == ()
    for trade in result.trades:
        assert trade.exchange == venue
        assert is_decimal_text(trade.price) and is_decimal_text(trade.qty)
        assert trade.side in ("buy", "sell")
        assert 0 <= trade.trade_id <= MAX_TRADE_ID
        assert isinstance(trade.ts_us, int) and not isinstance(trade.ts_us, bool)
        assert (trade.received_us, trade.conn_id, trade.frame_seq) == (7, "fuzz", 3)


@SETTINGS
@given(venue=st.sampled_from(VENUES), payload=st.binary(max_size=400))
def test_random_bytes_never_raise(venue: str, payload: bytes) -> None:
    _check_sane(parser_for(venue)(payload, 7, "fuzz", 3), venue)


@SETTINGS
@given(venue=st.sampled_from(VENUES), payload=st.text(max_size=200))
def test_random_text_never_raises(venue: str, payload: str) -> None:
    _check_sane(parser_for(venue)(payload, 7, "fuzz", 3), venue)


@SETTINGS
@given(venue=st.sampled_from(VENUES), value=json_values)
def test_random_json_never_raises(venue: str, value: Any) -> None:
    _check_sane(parser_for(venue)(json.dumps(value).encode(), 7, "fuzz", 3), venue)


def _mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """``value`` with one randomly chosen node replaced, removed or retyped."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        out = dict(value)
        action = data.draw(st.sampled_from(["replace", "delete", "descend"]))
        if action == "delete":
            del out[key]
        elif action == "replace" or depth > 6:
            out[key] = data.draw(json_values)
        else:
            out[key] = _mutate(data, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        out_list = list(value)
        action = data.draw(st.sampled_from(["replace", "delete", "descend", "duplicate"]))
        if action == "delete":
            del out_list[index]
        elif action == "duplicate":
            out_list.insert(index, value[index])
        elif action == "replace" or depth > 6:
            out_list[index] = data.draw(json_values)
        else:
            out_list[index] = _mutate(data, value[index], depth + 1)
        return out_list
    return data.draw(json_values)


@SETTINGS
@given(venue=st.sampled_from(VENUES), data=st.data())
def test_mutated_real_frames_never_raise(venue: str, data: st.DataObject) -> None:
    frame = data.draw(st.sampled_from(FRAMES[venue]))
    payload = json.dumps(_mutate(data, frame), separators=(",", ":")).encode()
    _check_sane(parser_for(venue)(payload, 7, "fuzz", 3), venue)


@SETTINGS
@given(data=st.data())
def test_kraken_fast_path_agrees_with_checked_path(data: st.DataObject) -> None:
    trade_frames = [f for f in FRAMES["kraken"] if (isinstance(f, dict) and f.get("channel") == "trade")
                    or (isinstance(f, list) and f[-2] == "trade")]
    payload = json.dumps(_mutate(data, data.draw(st.sampled_from(trade_frames)))).encode()
    try:
        v2 = msgspec.json.decode(payload, type=kraken._V2Trade)
    except (msgspec.DecodeError, RecursionError):
        v2 = None
    if v2 is not None:
        assert kraken._v2_trades(v2, 7, "fuzz", 3) == kraken._v2_trades_checked(v2, 7, "fuzz", 3)
    try:
        v1 = kraken._decode_v1(payload)
    except (msgspec.DecodeError, RecursionError):
        return
    _, rows, name, pair = v1
    if name == "trade":
        symbol = kraken._symbols[pair]
        assert kraken._v1_trades(v1, 7, "fuzz", 3) == kraken._v1_trades_checked(rows, pair, symbol, 7, "fuzz", 3)


@SETTINGS
@given(data=st.data())
def test_coinbase_fast_path_agrees_with_checked_path(data: st.DataObject) -> None:
    trade_frames = [f for f in FRAMES["coinbase"] if f.get("channel") == "market_trades"]
    payload = json.dumps(_mutate(data, data.draw(st.sampled_from(trade_frames)))).encode()
    try:
        message = msgspec.json.decode(payload, type=coinbase._MarketTrades)
    except (msgspec.DecodeError, RecursionError):
        return
    fast = coinbase._market_trades(message, 7, "fuzz", 3)
    assert fast == coinbase._market_trades_checked(message, 7, "fuzz", 3)


@SETTINGS
@given(data=st.data())
def test_binance_fast_path_agrees_with_checked_path(data: st.DataObject) -> None:
    trade_frames = [f for f in FRAMES["binance"] if f.get("e") == "trade" or "stream" in f]
    frame = _mutate(data, data.draw(st.sampled_from(trade_frames)))
    payload = json.dumps(frame, separators=(",", ":")).encode()
    result = binance.parse_frame(payload, 7, "fuzz", 3)
    if not isinstance(frame, dict):
        return
    event = frame["data"] if "stream" in frame and "data" in frame else frame  # the combined wrapper
    try:
        typed = msgspec.convert(event, binance._TradeEvent)
    except msgspec.ValidationError:
        return
    assert result == binance._trade_frame(typed, 7, "fuzz", 3)


@SETTINGS
@given(venue=st.sampled_from(VENUES), data=st.data())
def test_rest_parsers_raise_only_malformed_response(venue: str, data: st.DataObject) -> None:
    from ticklake.exchanges.mappers.common import MalformedResponse

    body = json.dumps(data.draw(json_values)).encode() if data.draw(st.booleans()) else data.draw(st.binary())
    module = registry.mapper(venue)
    with contextlib.suppress(MalformedResponse):  # anything else escaping fails the test
        module.parse_rest_trades(body, "BTC/USD", 7)
