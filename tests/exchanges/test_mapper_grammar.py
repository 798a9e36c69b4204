"""Issue 13: every mapper accepts exactly its venue's grammar and nothing else (regressions).

Each case below was found by probing the mappers with input the venue never sends.
"""

from __future__ import annotations

import pytest

from ticklake.exchanges.mappers import coinbase, kraken
from ticklake.settings import ValidationSettings
from ticklake.warehouse.validation import Validator

VALIDATOR = Validator(ValidationSettings())

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
    result = kraken.parse_frame(frame, 1_795_658_400_000_000)
    assert result.kind == "trades", result
    violation = VALIDATOR.check(result.trades[0])
    assert violation is not None and violation.rule == "bad_timestamp", violation
