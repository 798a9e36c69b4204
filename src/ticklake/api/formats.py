"""How values are written in responses: exact decimal text and RFC 3339 times in UTC (those from Unix
seconds and microseconds are ticklake.times': ``iso_seconds_z``, ``iso_us_z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from ticklake.model import Trade
from ticklake.times import iso_us_z
from ticklake.warehouse.reader import StoredTrade

# Enough digits for any quotient of two warehouse decimals (at most 76 digits each).
_WIDE = Context(prec=120)
VWAP_DECIMALS = 18  # the scale of silver prices: a VWAP is never finer than the prices it averages
_VWAP_QUANTUM = Decimal(1).scaleb(-VWAP_DECIMALS)


def decimal_text(value: Decimal) -> str:
    """Exact, normalized: no exponent, no trailing zeros (``"64123.1"``, ``"0.000000000000000001"``).

    ``format(value, "f")`` never rounds, unlike ``Decimal.normalize`` under a 28-digit context.
    """
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def vwap(quote_volume: Decimal, volume: Decimal) -> Decimal:
    """Volume-weighted average price, rounded half-even to 18 decimal places (0 without volume)."""
    if not volume:
        return Decimal(0)
    return _WIDE.divide(quote_volume, volume).quantize(_VWAP_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)


def time_text(moment: datetime) -> str:
    """RFC 3339 in UTC to the second: ``2026-01-02T03:04:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


# The one shape of a trade in every answer: /v1/trades, and the live stream's messages.
def trade_json(trade: Trade) -> dict[str, Any]:
    """A trade exactly as ``/v1/trades`` shows it."""
    return {"trade_id": str(trade.trade_id), "time": iso_us_z(trade.ts_us),
            "price": decimal_text(Decimal(trade.price)), "qty": decimal_text(Decimal(trade.qty)),
            "side": trade.side, "received_at": iso_us_z(trade.received_us)}


def stored_trade_json(trade: StoredTrade) -> dict[str, Any]:
    """A stored trade as ``/v1/trades`` shows it (trade ids as text: they reach 2^64, beyond a
    JavaScript number's precision)."""
    return {"trade_id": str(trade.trade_id), "time": iso_us_z(trade.ts_us), "price": decimal_text(trade.price),
            "qty": decimal_text(trade.qty), "side": trade.side, "received_at": iso_us_z(trade.received_us)}
