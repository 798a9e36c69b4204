"""Kraken spot (WebSocket v2): static facts (the code is in this folder's other modules)."""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, separated

# WebSocket v2 spells BTC/USD (not XBT); the XBT/XDG aliases are mapped back by ``symbols.canonical``.
_native_of, _canonical_of = separated("/")

VENUE: Final = Venue(
    name="kraken",
    default_symbols=("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "LINK/USD", "LTC/USD",
                     "BTC/EUR", "ETH/EUR"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    completeness="id-sequenced",  # contiguous trade ids per market
    separator="/",
    recording_names=("KRAKEN",),
)
