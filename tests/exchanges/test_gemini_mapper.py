"""Gemini's mapper: the REST page golden test, the real 2021 v2 recording, and the grammar's edges."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from ticklake.exchanges.mappers.common import MalformedResponse
from ticklake.exchanges.recording import read_session
from ticklake.venues.gemini import mapper

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRADE = {"type": "trade", "symbol": "BTCUSD", "event_id": 7, "timestamp": 1795658401031, "price": "91240.2",
         "quantity": "0.1", "side": "buy", "tid": 9}


def frame(**changes: object) -> bytes:
    return json.dumps({**TRADE, **changes}).encode()


def test_rest_trades_golden() -> None:
    spec = json.loads((FIXTURES / "gemini.rest.expected.json").read_text(encoding="utf-8"))
    body = (FIXTURES / "gemini.rest.json").read_bytes()
    trades = mapper.parse_rest_trades(body, spec["native_symbol"], spec["received_us"], conn_id=spec["conn_id"],
                                      frame_seq=spec["frame_seq"])
    # Page order (newest first); the broken trade left out; an auction fill has no taker side.
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]
    assert [t.side for t in trades] == ["buy", "unknown", "sell"]
    assert 2840140800042999 not in {t.trade_id for t in trades}
    assert mapper.parse_rest_trades(body, "btcusd", 1) == mapper.parse_rest_trades(body, "BTCUSD", 1)


def test_rest_errors_and_bad_rows_raise_malformed_response() -> None:
    with pytest.raises(MalformedResponse, match=r"InvalidSymbol.*not a valid symbol"):
        mapper.parse_rest_trades(b'{"result":"error","reason":"InvalidSymbol","message":"not a valid symbol"}',
                                 "NOPE", 1)
    row = {"timestamp": 1, "timestampms": 1000, "tid": 5, "price": "1.5", "amount": "2", "exchange": "gemini",
           "type": "buy"}
    for bad in ({"type": "Buy"}, {"price": "1e3"}, {"amount": ""}, {"tid": 0}, {"tid": "5"}, {"timestampms": 10**15}):
        with pytest.raises(MalformedResponse, match=r"row 0|REST trades"):
            mapper.parse_rest_trades(json.dumps([{**row, **bad}]), "BTCUSD", 1)
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        mapper.parse_rest_trades(b"<html>", "BTCUSD", 1)


def test_the_id_is_tid_else_event_id() -> None:
    assert mapper.parse_frame(frame(), 1).trades[0].trade_id == 9
    without_tid = {k: v for k, v in TRADE.items() if k != "tid"}
    assert mapper.parse_frame(json.dumps(without_tid), 1).trades[0].trade_id == 7
    neither = {k: v for k, v in without_tid.items() if k != "event_id"}
    assert "neither tid nor event_id" in mapper.parse_frame(json.dumps(neither), 1).error


@pytest.mark.parametrize("changes", [
    {"side": "Buy"}, {"side": "auction"}, {"price": "1e5"}, {"price": 91240.2}, {"quantity": "-"},
    {"timestamp": "1795658401031"}, {"timestamp": 0}, {"timestamp": 10**15}, {"tid": -1}, {"tid": 2**63},
    {"event_id": "7"}, {"symbol": 5},
])
def test_a_field_outside_the_grammar_fails_the_frame(changes: dict[str, object]) -> None:
    result = mapper.parse_frame(frame(**changes), 1)
    assert result.kind == "error" and result.error.startswith("gemini"), result
    assert result.trades == ()


@pytest.mark.parametrize("native", ["btcusd", "BTC-USD", "BTC/USD", "", "BTC USD"])
def test_a_symbol_not_in_the_venue_form_is_kept_for_a_dead_letter(native: str) -> None:
    result = mapper.parse_frame(frame(symbol=native), 1)
    assert result.kind == "trades" and result.trades[0].symbol == ""
    assert result.trades[0].native_symbol == native


def test_a_market_not_subscribed_is_kept_for_a_dead_letter() -> None:
    result = mapper.parse_frame(frame(symbol="ETHUSD"), 1, subscribed=frozenset({"BTCUSD"}))
    assert result.trades[0].symbol == "" and result.trades[0].native_symbol == "ETHUSD"
    assert mapper.parse_frame(frame(), 1, subscribed=frozenset({"BTCUSD"})).trades[0].symbol == "BTC/USD"


def test_the_first_l2_updates_is_the_subscription_answer_with_its_trades() -> None:
    first = {"type": "l2_updates", "symbol": "BTCUSD", "changes": [], "trades": [TRADE, {**TRADE, "tid": 8}],
             "auction_events": []}
    result = mapper.parse_frame(json.dumps(first), 1)
    assert result.kind == "subscribed" and [t.trade_id for t in result.trades] == [9, 8]
    broken = {**first, "trades": [TRADE, {**TRADE, "side": "x"}]}
    assert mapper.parse_frame(json.dumps(broken), 1).kind == "error"
    assert mapper.parse_frame(b'{"type":"l2_updates","symbol":"BTCUSD","changes":[]}', 1).kind == "other"


@pytest.mark.parametrize("payload", [b"", b"[]", b"{}", b'{"type":[]}', b"\xff\xfe", b'{"type":"trade"',
                                     b'{"type":"heartbeat","timestamp":1', b"null"])
def test_unreadable_frames_are_errors_not_crashes(payload: bytes) -> None:
    assert mapper.parse_frame(payload, 1).kind == "error", payload


# --- the real 2021 recording (cryptofeed GEMINI.ws.1.0: market data v2) -----------------------------
def test_recorded_v2_session(cryptofeed_dir: Path) -> None:
    """Every frame parses; every trade matches the raw JSON read by the standard library."""
    kinds: dict[str, int] = {}
    total = 0
    for seq, recorded in enumerate(read_session(cryptofeed_dir / "GEMINI.ws.1.0"), 1):
        assert recorded.exchange == "gemini"
        result = mapper.parse_frame(recorded.payload, recorded.received_us, recorded.conn_id, seq)
        kinds[result.kind] = kinds.get(result.kind, 0) + 1
        assert result.error == "", (recorded.payload[:120], result.error)
        message = json.loads(recorded.payload)
        kind = message["type"]
        rows = message.get("trades", []) if kind == "l2_updates" else [message] * (kind == "trade")
        assert [(t.native_symbol, t.trade_id, t.price, t.qty, t.side, t.ts_us) for t in result.trades] == [
            (r["symbol"], r["event_id"], r["price"], r["quantity"], r["side"], r["timestamp"] * 1000) for r in rows]
        assert all(t.symbol and t.symbol.replace("/", "") == t.native_symbol for t in result.trades)
        total += len(result.trades)
    # Ten symbols subscribed: ten answers with 50 trades each, then 16 live trades and 7 heartbeats.
    assert kinds == {"subscribed": 10, "other": 645, "trades": 16, "heartbeat": 7}
    assert total == 516
