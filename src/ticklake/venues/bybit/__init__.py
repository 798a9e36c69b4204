"""Bybit spot (API v5): static facts (the code is in this folder's mapper, feed, rest and simulated modules).

Docs relied on (bybit-exchange.github.io/docs/v5, checked December 2026): ``ws/connect`` (endpoints,
heartbeat, args limits), ``websocket/public/trade`` (``publicTrade.<symbol>``), ``market/recent-trade``
(``GET /v5/market/recent-trade``), ``rate-limit``. What was unclear, and what was decided, is in
docs/architecture.md ("Bybit") and in the module docstrings.
"""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, suffixed

# Bybit spot symbols have no separator (BTCUSDT): split on the longest known quote asset suffix.
QUOTES: Final[tuple[str, ...]] = (
    "USDT", "USDC", "USDE", "USD1", "FDUSD", "DAI", "BTC", "ETH", "EUR", "BRL", "PLN", "TRY", "MNT")

_native_of, _canonical_of = suffixed(QUOTES)

VENUE: Final = Venue(
    name="bybit",
    default_symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT", "LINK/USDT",
                     "LTC/USDT", "BTC/USDC", "ETH/USDC"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    separator="",
    # Spot trade ids are shared by all markets and the recent-trade page reaches back 60 trades: breaks
    # the page cannot cover are counted (ticklake_feed_backfill_short_total), not recovered.
    completeness="best-effort",
    recording_names=("BYBIT",),
    ids_count_trades=False,  # spot trade ids are shared by all markets (mapper.py)
)
