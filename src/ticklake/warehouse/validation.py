"""The rules a bronze trade must pass to reach silver.

A trade that breaks one goes to the dead-letter table with the rule's name and a detail; it is never
dropped silently. Rules are checked in the order below and the first one broken is recorded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from ticklake.exchanges.mappers.common import AGG_TRADE_SUFFIX, is_native_symbol, show
from ticklake.model import Trade
from ticklake.settings import ValidationSettings
from ticklake.venues import from_native

SIDES = pa.array(["buy", "sell", "unknown"])

UINT64_MAX = 2**64 - 1
# Timestamps ClickHouse's DateTime64 and Arrow both hold without surprise: 1970 up to 2100.
MAX_TIMESTAMP_US = 4_102_444_800_000_000
# silver stores Decimal(38, 18): 20 integer digits and 18 fractional ones.
MAX_SCALE = 18
MAX_INTEGER_DIGITS = 20


# Every rule ``Validator.check`` names, in the order it checks them (the dead-letter metric starts each
# at zero per venue, so that the dashboard shows a line before any trade was ever rejected).
RULES = ("bad_timestamp", "bad_trade_id", "bad_symbol", "unsubscribed_market", "unknown_symbol", "bad_price",
         "non_positive_price", "absurd_price", "bad_qty", "non_positive_qty", "absurd_qty", "bad_side",
         "future_timestamp", "stale_timestamp")


class Violation(NamedTuple):
    rule: str
    detail: str


class Validator:
    def __init__(self, settings: ValidationSettings) -> None:
        self.max_price = Decimal(settings.max_price)
        self.max_qty = Decimal(settings.max_qty)
        # silver's decimal type holds at most 20 integer digits: a larger limit cannot be a scalar of it
        largest = Decimal("99999999999999999999")
        self._max_price = pa.scalar(min(self.max_price, largest), pa.decimal128(38, MAX_SCALE))
        self._max_qty = pa.scalar(min(self.max_qty, largest), pa.decimal128(38, MAX_SCALE))
        self.max_future_us = int(settings.max_future_s * 1_000_000)
        self.max_age_us = int(settings.max_age_days * 86_400 * 1_000_000)

    def all_valid(self, table: pa.Table) -> tuple[pa.ChunkedArray, pa.ChunkedArray] | None:
        """The batch's prices and quantities as exact decimals when *every* row passes every rule,
        else None.

        The fast path for whole batches, a column at a time; ``check`` stays the authority: a batch
        with any doubtful row goes through it row by row. (Tests hold the two to the same verdicts.)
        """
        try:
            price = table["price"].cast(pa.decimal128(38, MAX_SCALE))
            qty = table["qty"].cast(pa.decimal128(38, MAX_SCALE))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None  # text that is not a decimal that fits: let check() name the rule
        zero = pa.scalar(Decimal(0), pa.decimal128(38, MAX_SCALE))
        ts = table["ts"].cast(pa.int64())
        received = table["received_at"].cast(pa.int64())
        lag = pc.subtract(received, ts)
        conditions = (
            pc.not_equal(table["symbol"], ""),
            pc.greater(price, zero),
            pc.less_equal(price, self._max_price),
            pc.greater(qty, zero),
            pc.less_equal(qty, self._max_qty),
            pc.is_in(table["side"], value_set=SIDES),
            pc.greater_equal(lag, -self.max_future_us),
            pc.less_equal(lag, self.max_age_us),
        )
        for condition in conditions:
            if not pc.all(condition).as_py():
                return None
        return price, qty

    def check(self, trade: Trade) -> Violation | None:
        """The first rule ``trade`` breaks, or None when it may enter silver."""
        # Times first: a venue without ids (Kraken v1) derives the id from the time, so an absurd time
        # also makes an absurd id, and the fault is the time.
        if not (0 <= trade.ts_us < MAX_TIMESTAMP_US and 0 <= trade.received_us < MAX_TIMESTAMP_US):
            return Violation("bad_timestamp", f"exchange time {trade.ts_us} us is outside 1970..2100")
        if not 0 <= trade.trade_id <= UINT64_MAX:
            return Violation("bad_trade_id", f"trade id {trade.trade_id} is outside 0..2^64-1")
        if not trade.symbol:
            return _symbol_violation(trade)
        for field, text, limit in (("price", trade.price, self.max_price), ("qty", trade.qty, self.max_qty)):
            violation = _check_amount(field, text, limit)
            if violation is not None:
                return violation
        if trade.side not in ("buy", "sell", "unknown"):
            return Violation("bad_side", f"side {trade.side!r}")
        if trade.ts_us - trade.received_us > self.max_future_us:
            ahead = (trade.ts_us - trade.received_us) / 1e6
            return Violation("future_timestamp", f"exchange time is {ahead:.3f} s after receive time")
        if trade.received_us - trade.ts_us > self.max_age_us:
            behind = (trade.received_us - trade.ts_us) / 86_400e6
            return Violation("stale_timestamp", f"exchange time is {behind:.1f} days before receive time")
        return None


def _symbol_violation(trade: Trade) -> Violation:
    """Why a trade has no canonical symbol. The mapper leaves it out for a native symbol not in the
    venue's form and for a market the connection did not subscribe to (mappers/common.py); a native
    symbol in form that names a market is therefore one that was not subscribed."""
    exchange, native = trade.exchange, trade.native_symbol
    if not is_native_symbol(exchange, native):
        return Violation("bad_symbol", f"native symbol {show(native)} is not in {show(exchange)}'s form")
    if from_native(exchange, native.removesuffix(AGG_TRADE_SUFFIX)):
        return Violation("unsubscribed_market", f"{show(native)} is not a market the connection subscribed to")
    return Violation("unknown_symbol", f"cannot map native symbol {native!r}")


def _check_amount(field: str, text: str, limit: Decimal) -> Violation | None:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError, TypeError):
        return Violation(f"bad_{field}", f"{field} {text!r} is not a decimal number")
    if not value.is_finite():
        return Violation(f"bad_{field}", f"{field} {text!r} is not finite")
    if value <= 0:
        return Violation(f"non_positive_{field}", f"{field} {text} <= 0")
    if value > limit:
        return Violation(f"absurd_{field}", f"{field} {text} > {limit}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_SCALE and value != value.quantize(Decimal(1).scaleb(-MAX_SCALE)):
        return Violation(f"bad_{field}", f"{field} {text} has more than {MAX_SCALE} decimal places")
    if value.adjusted() >= MAX_INTEGER_DIGITS:
        return Violation(f"absurd_{field}", f"{field} {text} has more than {MAX_INTEGER_DIGITS} integer digits")
    return None
