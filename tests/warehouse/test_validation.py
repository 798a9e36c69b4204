"""The batch fast path and the row-by-row rules give the same verdicts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import BASE_US, trade
from ticklake.model import Trade
from ticklake.settings import ValidationSettings
from ticklake.warehouse import arrow
from ticklake.warehouse.validation import RULES, Validator

VALIDATOR = Validator(ValidationSettings())
amounts = st.one_of(
    st.decimals(min_value=-5, max_value=2_000_000_000, allow_nan=False, allow_infinity=False, places=8).map(str),
    st.sampled_from(["0", "-0.0", "1e40", "1E-8", "abc", "", " 5", "+5", "NaN", "Infinity", "1.0000000000000000001",
                     "1.0000000000000000000", "99999999999999999999", "100000000000000000000", "0.000000000000000001"]),
)


@st.composite
def trades(draw: st.DrawFn) -> Trade:
    ts = BASE_US + draw(st.integers(-10**12, 10**12))
    return trade(draw(st.integers(0, 2**64 - 1)), draw(amounts), draw(amounts),
                 symbol=draw(st.sampled_from(["BTC/USDT", ""])), native_symbol="BTCUSDT",
                 side=draw(st.sampled_from(["buy", "sell", "unknown", "both"])), ts_us=ts,
                 received_us=ts + draw(st.integers(-30_000_000, 8 * 86_400_000_000)))


@settings(max_examples=300, deadline=None)
@given(st.lists(trades(), min_size=1, max_size=6))
def test_fast_path_accepts_a_batch_only_when_every_row_is_valid(batch: list[Trade]) -> None:
    every_row_valid = all(VALIDATOR.check(t) is None for t in batch)
    fast = VALIDATOR.all_valid(arrow.bronze(batch))
    if fast is not None:
        assert every_row_valid
        price, qty = fast
        slow = arrow.silver(batch)
        assert price.to_pylist() == slow["price"].to_pylist()
        assert qty.to_pylist() == slow["qty"].to_pylist()
    # Rows the slow path accepts always convert to silver's decimals.
    valid = [t for t in batch if VALIDATOR.check(t) is None]
    if valid:
        assert arrow.silver(valid).num_rows == len(valid)


def test_plain_valid_batch_takes_the_fast_path() -> None:
    assert VALIDATOR.all_valid(arrow.bronze([trade(1, "64123.10", "0.00000638"), trade(2, "1", "2")])) is not None


def test_rules_names_every_rule_check_gives() -> None:
    """``RULES`` is what the dead-letter metric starts at zero per venue: one trade breaking each rule
    gives each name once, and no other."""
    late, now = BASE_US - 7 * 86_400_000_000, BASE_US
    breaking = [
        trade(1, ts_us=-1), trade(2**64, ts_us=now, received_us=now),
        trade(3, symbol="", native_symbol="btc-usdt!"), trade(4, symbol="", native_symbol="ETHBTC"),
        trade(5, symbol="", native_symbol="FOOBAR"),
        trade(6, "abc"), trade(7, "0"), trade(8, "1e40"), trade(9, qty="abc"), trade(10, qty="-1"),
        trade(11, qty="1e40"), trade(12, side="both"), trade(13, ts_us=now + 3_600_000_000, received_us=now),
        trade(14, ts_us=late, received_us=now),
    ]
    given = [violation.rule for violation in map(VALIDATOR.check, breaking) if violation is not None]
    assert given == list(RULES)
