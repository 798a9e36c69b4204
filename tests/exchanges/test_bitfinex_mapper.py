"""Bitfinex mapper: what the shared golden and fuzz tests do not say, and the real 2021 session cryptofeed recorded.

The recording (``BITFINEX.ws.11.0``) was made with ``conf`` flags 65536 (``SEQ_ALL``) and subscribes ticker,
book and trades channels of seven pairs: it proves the channel-id bookkeeping, the sequence numbers on every
channel message, and the snapshot row grammar on real values, read independently by the standard library.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from ticklake.exchanges.mappers.common import MalformedResponse, is_native_symbol
from ticklake.exchanges.recording import RecordedFrame, read_session
from ticklake.model import ParsedFrame
from ticklake.settings import ValidationSettings
from ticklake.venues import from_native, to_native
from ticklake.venues.bitfinex import mapper
from ticklake.venues.bitfinex.mapper import parse_frame, parse_rest_trades
from ticklake.venues.bitfinex.rest import POLICY, trades_path
from ticklake.warehouse.validation import Validator

RECORDING = "BITFINEX.ws.11.0"
VALIDATOR = Validator(ValidationSettings())
SUBSCRIBED = b'{"event":"subscribed","channel":"trades","chanId":5,"symbol":"tBTCUSD","pair":"BTCUSD"}'
TE = '[5,"te",[401597393,1795658400000,%s,%s],%s]'
NOW_US = 1_795_658_400_000_000  # received at the frames' exchange time


def _on(conn_id: str, *frames: bytes | str, subscribed: frozenset[str] | None = None) -> list[ParsedFrame]:
    """The frames parsed in order on one connection that first subscribed tBTCUSD as channel 5."""
    mapper.forget(conn_id)
    parse_frame(SUBSCRIBED, 1, conn_id, 1)
    return [parse_frame(frame, NOW_US, conn_id, seq, subscribed=subscribed) for seq, frame in enumerate(frames, 2)]


def _recorded(cryptofeed_dir: Path) -> list[tuple[RecordedFrame, ParsedFrame]]:
    path = cryptofeed_dir / RECORDING
    if not path.is_file():
        pytest.skip(f"{RECORDING} not found")
    return [(frame, parse_frame(frame.payload, frame.received_us, frame.conn_id, seq))
            for seq, frame in enumerate(read_session(path), 1)]


def test_recorded_session_parses_without_an_error(cryptofeed_dir: Path) -> None:
    parsed = _recorded(cryptofeed_dir)
    assert {frame.exchange for frame, _ in parsed} == {"bitfinex"}
    assert [(f.payload[:80], p.error) for f, p in parsed if p.kind == "error"] == []
    assert Counter(p.kind for _, p in parsed) == {"other": 1623, "heartbeat": 42, "subscribed": 21, "trades": 7}


def test_recorded_sequence_numbers_are_reported_on_every_channel_message(cryptofeed_dir: Path) -> None:
    parsed = _recorded(cryptofeed_dir)
    arrays = [(f, p) for f, p in parsed if f.payload.lstrip()[:1] in ("[", b"[")]
    assert [p.sequence for _, p in arrays] == [json.loads(f.payload)[-1] for f, _ in arrays]
    assert [p.sequence for _, p in arrays] == list(range(1, len(arrays) + 1))  # no frame lost in the recording
    assert all(p.sequence is None for f, p in parsed if (f, p) not in arrays)  # events carry none


def test_recorded_snapshots_match_an_independent_reader(cryptofeed_dir: Path) -> None:
    parsed = _recorded(cryptofeed_dir)
    channels = {}
    got, want = [], []
    for frame, result in parsed:
        message = json.loads(frame.payload, parse_float=str, parse_int=str)
        if isinstance(message, dict) and message.get("event") == "subscribed" and message["channel"] == "trades":
            channels[int(message["chanId"])] = message["symbol"]
        if result.kind == "trades":
            native = channels[int(message[0])]
            for trade_id, mts, amount, price in reversed(message[1]):  # oldest first
                side = "sell" if amount.startswith("-") else "buy"
                want.append((native, int(trade_id), price, amount.lstrip("-"), side, int(mts) * 1000))
            got += [(t.native_symbol, t.trade_id, t.price, t.qty, t.side, t.ts_us) for t in result.trades]
    assert len(got) == 210 and got == want  # 7 snapshots of 30
    symbols = {t.native_symbol: t.symbol for _, p in parsed for t in p.trades}
    assert symbols["tTESTBTC:TESTUSD"] == "TESTBTC/TESTUSD" and symbols["tIOTETH"] == "IOT/ETH"


def test_channel_ids_belong_to_their_connection() -> None:
    frame = TE % ("0.5", "91234", "3")
    [on_a] = _on("conn-a", frame)
    assert on_a.kind == "trades" and on_a.trades[0].native_symbol == "tBTCUSD"
    mapper.forget("conn-b")
    alone = parse_frame(frame, 7, "conn-b", 1)  # another connection never subscribed channel 5
    assert (alone.kind, alone.trades, alone.sequence) == ("error", (), 3) and "channel 5" in alone.error
    # A new connection's info event starts its channel ids afresh (a reused conn_id in a replay).
    parse_frame(b'{"event":"info","version":2,"platform":{"status":1}}', 7, "conn-a", 9)
    assert parse_frame(frame, 7, "conn-a", 10).kind == "error"
    # ... and an unsubscribed channel is forgotten.
    _on("conn-c")
    parse_frame(b'{"event":"unsubscribed","status":"OK","chanId":5}', 7, "conn-c", 3)
    assert parse_frame(frame, 7, "conn-c", 4).kind == "error"


def test_the_channel_table_is_bounded() -> None:
    for index in range(mapper.MAX_CONNECTIONS + 10):
        parse_frame(SUBSCRIBED, 1, f"flood-{index}", 1)
    assert len(mapper._CHANNELS) <= mapper.MAX_CONNECTIONS
    mapper.forget("many")
    for chan_id in range(mapper.MAX_CHANNELS):
        event = SUBSCRIBED.replace(b'"chanId":5', b'"chanId":%d' % chan_id)
        assert parse_frame(event, 1, "many", chan_id).kind == "subscribed"
    one_more = SUBSCRIBED.replace(b'"chanId":5', b'"chanId":99999')
    assert parse_frame(one_more, 1, "many", 0).kind == "error"


@pytest.mark.parametrize(("amount", "price", "qty_side_price"), [
    ("0.5", "91234", ("0.5", "buy", "91234")), ("-0.5", "91234.5", ("0.5", "sell", "91234.5")),
    ("1E-8", "2.8015E+3", ("0.00000001", "buy", "2801.5")), ("-1e-8", "1", ("0.00000001", "sell", "1")),
    ("12", "30", ("12", "buy", "30")),
])
def test_amount_and_price_are_read_exactly(amount: str, price: str, qty_side_price: tuple[str, str, str]) -> None:
    [result] = _on("exact", TE % (amount, price, "2"))
    [trade] = result.trades
    assert (trade.qty, trade.side, trade.price) == qty_side_price
    assert result.sequence == 2


@pytest.mark.parametrize(("amount", "price", "words"), [
    ('"0.5"', "1", "bad AMOUNT"), ("0.5", '"1"', "bad PRICE"), ("0", "1", "zero"), ("-0.0", "1", "zero"),
    ("true", "1", "bad AMOUNT"), ("null", "1", "bad AMOUNT"), ("[1]", "1", "bad AMOUNT"),
])
def test_amounts_outside_the_grammar_fail_the_frame(amount: str, price: str, words: str) -> None:
    [result] = _on("bad", TE % (amount, price, "2"))
    assert (result.kind, result.trades, result.sequence) == ("error", (), 2), result
    assert words in result.error


@pytest.mark.parametrize("frame", [
    '[5,"te",[-1,1795658400000,1,1],2]', '[5,"te",[1.5,1795658400000,1,1],2]', '[5,"te",[1,0,1,1],2]',
    '[5,"te",[1,100000000000000,1,1],2]', '[5,"te",["1",1795658400000,1,1],2]', '[5,"te",[1,1795658400000,1,1],-2]',
    '[5,"te",[1,1795658400000,1,1],2.5]', '[5,"te",[1,1795658400000,1,1],"2"]', '[5,"te",[1,1795658400000,1,1,9],2]',
    '[true,"te",[1,1795658400000,1,1],2]', '[5,"te"]', "[5]", "[]", '[5,"zz",[1,1795658400000,1,1],2]',
    '[5,[[1,1795658400000,1,1]],2,3]', '[5,[[1,1795658400000,1]],2]', '[5,"hb",2,3]', '[5,"te",[],2]',
    "[" * 5000, '{"chanId":5}', "5", '"hb"',
])
def test_channel_messages_outside_the_grammar_are_errors(frame: str) -> None:
    for payload in (frame, frame.encode()):
        [result] = _on("grammar", payload)
        assert result.kind == "error" and result.trades == () and result.error, (payload, result)


def test_heartbeats_and_updates_carry_their_sequence() -> None:
    results = _on("hb", '[5,"hb",41]', '[5,"hb"]', '[5,"tu",[1,1795658400000,1,1],42]', '[77,"hb",43]',
                  b'{"event":"pong","ts":1,"cid":7}')
    assert [(r.kind, r.sequence) for r in results] == [("heartbeat", 41), ("heartbeat", None), ("other", 42),
                                                       ("heartbeat", 43), ("heartbeat", None)]


@pytest.mark.parametrize(("event", "kind", "error"), [
    ({"event": "info", "code": 20051, "msg": "Stopping"}, "shutdown", ""),
    ({"event": "info", "code": 20061, "msg": "Maintenance ended"}, "shutdown", ""),
    ({"event": "info", "code": 20060, "msg": "Maintenance"}, "other", ""),
    ({"event": "info", "version": 3}, "error", "version"),
    ({"event": "conf", "status": "FAILED", "flags": 65536}, "error", "conf refused"),
    ({"event": "error", "code": 10300, "msg": "symbol: invalid", "symbol": "tNOPE"}, "error", "10300"),
    ({"event": "subscribed", "channel": "trades", "chanId": "5", "symbol": "tBTCUSD"}, "error", "chanId"),
    ({"event": "subscribed", "channel": "trades", "chanId": True, "symbol": "tBTCUSD"}, "error", "chanId"),
    ({"event": 5}, "error", "event name"),
    ({"event": "something-new"}, "other", ""),
])
def test_events(event: dict[str, object], kind: str, error: str) -> None:
    result = parse_frame(json.dumps(event), 1, "events", 1)
    assert result.kind == kind and error in result.error, result


def test_markets_not_subscribed_or_not_spot_become_dead_letters() -> None:
    frame = TE % ("0.5", "91234", "2")
    [kept] = _on("dl", frame, subscribed=frozenset({"tBTCUSD"}))
    assert kept.trades[0].symbol == "BTC/USD" and VALIDATOR.check(kept.trades[0]) is None
    [other] = _on("dl", frame, subscribed=frozenset({"tETHUSD"}))
    violation = VALIDATOR.check(other.trades[0])
    assert other.trades[0].symbol == "" and violation is not None and violation.rule == "unsubscribed_market"
    mapper.forget("perp")
    parse_frame(b'{"event":"subscribed","channel":"trades","chanId":6,"symbol":"tBTCF0:USTF0"}', 1, "perp", 1)
    [perp] = parse_frame('[6,"te",[1,1795658400000,1,1],2]', NOW_US, "perp", 2).trades
    violation = VALIDATOR.check(perp)
    assert perp.symbol == "" and violation is not None and violation.rule == "bad_symbol"


@pytest.mark.parametrize(("canonical", "native"), [
    ("BTC/USD", "tBTCUSD"), ("BTC/USDT", "tBTCUST"), ("USDC/USD", "tUDCUSD"), ("AVAX/USD", "tAVAX:USD"),
    ("LINK/USDT", "tLINK:UST"), ("BTC/CNHT", "tBTC:CNHT"), ("TESTBTC/TESTUSD", "tTESTBTC:TESTUSD"),
])
def test_symbols_both_ways(canonical: str, native: str) -> None:
    assert to_native("bitfinex", canonical) == native
    assert from_native("bitfinex", native) == canonical
    assert is_native_symbol("bitfinex", native)


@pytest.mark.parametrize("native", ["BTCUSD", "tbtcusd", "tBTC:USD", "tBTCUSDT", "tAVAX:USD:X", "fUSD", "tBTCF0:USTF0",
                                    "tBTC/USD", "", "t", "tBTCUS\u0000D", "tBTC:", "t:USD", " tBTCUSD", "tBTCUSD\n",
                                    "tBTCUS\u216e"])
def test_native_symbols_not_in_the_venue_form(native: str) -> None:
    assert not is_native_symbol("bitfinex", native)


def test_rest_errors_and_bad_rows_raise_only_malformed_response() -> None:
    for body, words in ((b'["error",10020,"symbol: invalid"]', "10020"), (b'{"error":"ERR_RATE_LIMIT"}', "RATE"),
                        (b'[[1,1795658400000,1,1,9]]', "length 4"), (b'[[1,1795658400000,0,1]]', "row 0"),
                        (b"not json", "invalid JSON"), (b'[[1,1795658400000,"1",1]]', "bad AMOUNT")):
        with pytest.raises(MalformedResponse, match=words):
            parse_rest_trades(body, "tBTCUSD", 1)
    assert parse_rest_trades(b"[]", "tBTCUSD", 1) == ()


def test_rest_policy_is_half_the_documented_limit() -> None:
    assert POLICY.base_url == "https://api-pub.bitfinex.com"
    assert POLICY.limit.per_second * 60 == pytest.approx(7.5)  # 15 requests a minute, documented
    assert POLICY.throttled(b'["error", 11010, "ratelimit: error"]') and POLICY.throttled(b'{"error":"ERR_RATE_LIMIT"}')
    assert not POLICY.throttled(b"[[1,2,3,4]]")
    assert trades_path("tAVAX:USD") == "/v2/trades/tAVAX:USD/hist"
    assert trades_path("t/../x") == "/v2/trades/t%2F..%2Fx/hist"  # a path segment, escaped


def test_snapshot_rows_are_exact_decimals() -> None:
    [result] = _on("snap", '[5,[[2,1795658400001,-0.30000000000000004,0.1],[1,1795658400000,7,1E2]],9]')
    assert [(t.trade_id, t.qty, t.side, t.price) for t in result.trades] == [(1, "7", "buy", "100"),
                                                                            (2, "0.30000000000000004", "sell", "0.1")]
    assert Decimal(result.trades[1].qty) == Decimal("0.30000000000000004")


def test_rest_trades_golden() -> None:
    import msgspec

    fixtures = Path(__file__).parent / "fixtures"
    spec = json.loads((fixtures / "bitfinex.rest.expected.json").read_text())
    body = (fixtures / "bitfinex.rest.json").read_bytes()
    trades = parse_rest_trades(body, spec["native_symbol"], spec["received_us"], conn_id=spec["conn_id"],
                               frame_seq=spec["frame_seq"])
    # Page order (sort=1: oldest first); AMOUNT's sign is the taker's side, -1.5e-3 read exactly.
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]
