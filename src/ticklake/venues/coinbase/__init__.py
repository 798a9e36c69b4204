"""Coinbase Advanced Trade: static facts (the code is in this folder's other modules)."""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, separated

_native_of, _canonical_of = separated("-")

VENUE: Final = Venue(
    name="coinbase",
    default_symbols=("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "AVAX/USD", "LINK/USD",
                     "LTC/USD", "BTC/USDT"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    completeness="id-sequenced",  # contiguous trade ids per market
    separator="-",
    recording_names=("COINBASE",),
)
