"""Bitstamp (WebSocket API v2, HTTP API v2): static facts (the code is in this folder's mapper, feed, rest and
simulated modules).

Docs relied on (www.bitstamp.net/websocket/v2/ and www.bitstamp.net/api/, read through stored copies, 2026):
"Websocket API v2" (connection, subscriptions, the ``live_trades_[market]`` channel and its fields,
``bts:heartbeat``, forced reconnection ``bts:request_reconnect``, maximum connection age 90 days) and
"HTTP API v2" ("Transactions": ``GET /api/v2/transactions/{market_symbol}/?time=minute|hour|day``; rate
limits). What was unclear, and what was decided, is in docs/architecture.md ("Bitstamp") and in the
module docstrings.

Symbols: Bitstamp spells a market in lower case with no separator (``btcusd``, its ``url_symbol``), in the
WebSocket channel and in the REST path alike; ticklake keeps that spelling as the native symbol
(``Venue.lower_case``), so bronze holds what the venue sent. ``from_native`` upper-cases before splitting on
the longest known quote suffix.
"""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, suffixed

# Bitstamp's quote currencies (trading-pairs-info: USD, EUR, GBP, the USDT/USDC stablecoins, BTC and ETH).
QUOTES: Final[tuple[str, ...]] = ("USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH")

_upper_native_of, _canonical_of = suffixed(QUOTES)


def _native_of(base: str, quote: str) -> str:
    return _upper_native_of(base, quote).lower()


VENUE: Final = Venue(
    name="bitstamp",
    # Bitstamp's most traded spot markets: the majors against USD, two against EUR, BTC/USDT and ETH/BTC.
    default_symbols=("BTC/USD", "ETH/USD", "BTC/EUR", "ETH/EUR", "XRP/USD", "LTC/USD", "SOL/USD", "LINK/USD",
                     "BTC/USDT", "ETH/BTC"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    separator="",
    # Trade ids are one sequence shared by every market (the recording: ids 216000477, 216000484 ... on
    # ethusd, interleaved with other pairs'), so a lost trade is not seen by id; the REST transactions
    # endpoint serves every trade of the last day: each break is reconciled over the time since the
    # newest trade held (rest.py).
    completeness="reconciled-by-time",
    recording_names=("BITSTAMP",),
    ids_count_trades=False,
    lower_case=True,
)
