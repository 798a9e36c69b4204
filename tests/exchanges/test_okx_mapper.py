"""OKX mapper: what the shared golden and fuzz tests do not say, and the real 2022 session cryptofeed recorded.

The recording (``OKX.ws.1.0``, ``/ws/v5/public``) holds the ``trades`` channel, which ticklake recognizes but
never stores (aggregated per taker order and price since 2023: see the mapper's docstring). Its rows have the
fields of ``trades-all`` rows, so the recording still proves the row grammar on real values: each push,
relabelled ``trades-all``, must give the trades an independent reader (the standard library's ``json``) sees.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ticklake.exchanges.gaps import GapTracker
from ticklake.exchanges.mappers.common import MAX_TRADE_ID, MalformedResponse
from ticklake.exchanges.recording import RecordedFrame, read_session
from ticklake.model import ParsedFrame
from ticklake.venues.okx.mapper import parse_frame, parse_rest_trades
from ticklake.venues.okx.rest import POLICY

RECORDING = "OKX.ws.1.0"


def _push(row: dict[str, str], channel: str = "trades-all") -> bytes:
    return json.dumps({"arg": {"channel": channel, "instId": row["instId"]}, "data": [row]}).encode()


ROW = {"instId": "BTC-USDT", "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306", "side": "sell",
       "source": "0", "ts": "1630048897897"}


def _recorded(cryptofeed_dir: Path) -> list[tuple[RecordedFrame, ParsedFrame]]:
    frames = list(read_session(cryptofeed_dir / RECORDING))
    return [(frame, parse_frame(frame.payload, frame.received_us, frame.conn_id, seq))
            for seq, frame in enumerate(frames, 1)]


def test_recorded_session_is_okx_and_no_frame_is_an_error(cryptofeed_dir: Path) -> None:
    parsed = _recorded(cryptofeed_dir)
    assert {frame.exchange for frame, _ in parsed} == {"okx"}
    assert [(f.payload[:80], p.error) for f, p in parsed if p.kind == "error"] == []
    channels = Counter(json.loads(f.payload)["arg"]["channel"] for f, p in parsed if p.kind == "other")
    assert channels == {"books": 290, "trades": 74, "tickers": 28}  # 293, 80, 37 lines less 3, 6, 9 acks
    assert Counter(p.kind for _, p in parsed) == {"other": 392, "subscribed": 18}
    assert all(not p.trades for _, p in parsed)  # the aggregated channel stores nothing


def test_recorded_trade_rows_parse_exactly_as_trades_all(cryptofeed_dir: Path) -> None:
    rows = [row for frame, _ in _recorded(cryptofeed_dir)
            for message in [json.loads(frame.payload)] if message["arg"]["channel"] == "trades" and "data" in message
            for row in message["data"]]
    assert Counter(row["instId"] for row in rows) == {"BTC-USDT": 69, "BTC-USD-220527": 4, "UNI-USD-SWAP": 1}
    trades = []
    for seq, row in enumerate(rows, 1):
        parsed = parse_frame(_push(row), 7, "rec", seq, subscribed={"BTC-USDT"})
        assert parsed.kind == "trades" and parsed.error == "", row
        [trade] = parsed.trades
        assert (trade.native_symbol, trade.trade_id, trade.price, trade.qty, trade.side, trade.ts_us) == (
            row["instId"], int(row["tradeId"]), row["px"], row["sz"], row["side"], int(row["ts"]) * 1000)
        # A future or a swap is not a spot pair (and was not subscribed): a dead letter, not a market.
        assert trade.symbol == ("BTC/USDT" if row["instId"] == "BTC-USDT" else "")
        trades.append(trade)
    # In 2022 each row was one trade: the BTC-USDT ids are contiguous, so no gap would open.
    spot = [t for t in trades if t.symbol]
    tracker = GapTracker({})
    assert tracker.observe(tuple(spot)) is None
    assert [t.trade_id for t in spot] == list(range(spot[0].trade_id, spot[0].trade_id + len(spot)))


def test_the_aggregated_channel_is_recognized_and_not_stored() -> None:
    aggregated = dict(ROW, tradeId="130639477", sz="0.3", count="3")
    del aggregated["source"]
    assert parse_frame(_push(aggregated, channel="trades"), 7) == ParsedFrame("other")
    assert parse_frame(_push(aggregated), 7).trades[0].trade_id == 130639477  # the same row on trades-all


@pytest.mark.parametrize(("payload", "kind", "error"), [
    (b"pong", "heartbeat", ""),
    ("pong", "heartbeat", ""),
    (b"ping", "error", "invalid JSON"),
    (b'{"event":"subscribe","arg":{"channel":"trades-all"', "error", "invalid JSON"),
    (b"[]", "error", "expected a JSON object, got list"),
    (b"{}", "error", "neither event nor arg"),
    (b"", "error", "empty frame"),
    (b'{"event":5}', "error", "bad routing fields"),
    (b'{"event":"notice","code":"64009","msg":"something else"}', "other", ""),
    (b'{"event":"channel-conn-count-error","channel":"trades-all","connCount":"30","connId":"1"}', "error",
     "channel-conn-count-error"),
    (b'{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[]}', "trades", ""),
    (b'{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":{}}', "error", "trades-all"),
    (b'{"arg":{"channel":"trades-all","instId":"BTC-USDT"}}', "error", "data"),
    (b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[]}]}', "other", ""),
])
def test_frames_beyond_the_fixtures(payload: bytes | str, kind: str, error: str) -> None:
    parsed = parse_frame(payload, 7)
    assert parsed.kind == kind, parsed
    assert error in parsed.error and (parsed.error == "") == (error == "")


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("tradeId", str(MAX_TRADE_ID + 1), "bad tradeId"),
    ("tradeId", "-1", "bad tradeId"),
    ("tradeId", "", "bad tradeId"),
    ("tradeId", "١٢٣", "bad tradeId"),  # digits of another script
    ("ts", "1630048897897.5", "bad ts"),
    ("ts", "163004889789700000", "bad ts"),
    ("px", " 1", "bad px"),
    ("px", "NaN", "bad px"),
    ("sz", "+1", "bad sz"),
    ("sz", "1_0", "bad sz"),
    ("side", "", "side"),
    ("px", 42219.9, "px"),  # a JSON number: OKX sends strings
    ("ts", 1630048897897, "ts"),
])
def test_a_bad_field_fails_its_frame_naming_it(field: str, value: object, reason: str) -> None:
    parsed = parse_frame(json.dumps({"arg": {"channel": "trades-all", "instId": "BTC-USDT"},
                                     "data": [dict(ROW, **{field: value})]}), 7)
    assert parsed.kind == "error" and reason in parsed.error and not parsed.trades, parsed


def test_a_trade_of_an_unsubscribed_instrument_keeps_no_symbol() -> None:
    parsed = parse_frame(_push(dict(ROW, instId="ETH-USDT")), 7, subscribed={"BTC-USDT"})
    assert parsed.trades[0].symbol == "" and parsed.trades[0].native_symbol == "ETH-USDT"
    lower = parse_frame(_push(dict(ROW, instId="btc-usdt")), 7, subscribed={"btc-usdt"})
    assert lower.trades[0].symbol == ""  # not the venue's form


def test_rest_errors_raise_malformed_response_with_the_venues_words() -> None:
    with pytest.raises(MalformedResponse, match=r"51001.*Instrument ID does not exist"):
        parse_rest_trades(b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}', "BTC-USDT", 7)
    with pytest.raises(MalformedResponse, match="row 0: instId='ETH-USDT'"):
        parse_rest_trades(json.dumps({"code": "0", "msg": "", "data": [dict(ROW, instId="ETH-USDT")]}),
                          "BTC-USDT", 7)
    with pytest.raises(MalformedResponse, match="row 1: bad px"):
        parse_rest_trades(json.dumps({"code": "0", "msg": "", "data": [ROW, dict(ROW, px="1e3")]}), "BTC-USDT", 7)
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        parse_rest_trades(b"<html>", "BTC-USDT", 7)
    with pytest.raises(MalformedResponse, match="50011"):
        parse_rest_trades(b'{"code":"50011","msg":"Too Many Requests","data":[]}', "BTC-USDT", 7)
    assert parse_rest_trades(b'{"code":"0","msg":"","data":[]}', "BTC-USDT", 7) == ()


def test_a_throttle_in_a_2xx_body_is_waited_out() -> None:
    assert POLICY.throttled(b'{"code":"50011","msg":"Too Many Requests","data":[]}')
    assert not POLICY.throttled(b'{"code":"0","msg":"","data":[]}')
