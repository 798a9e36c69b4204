"""OKX spot (API v5): static facts (the code is in this folder's mapper, feed, rest and simulated modules)."""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, separated

# instId spells a spot pair BASE-QUOTE ("BTC-USDT"); swaps and futures ("BTC-USD-SWAP", "BTC-USD-220527")
# have more parts and are not in this form, so their trades are dead letters (bad_symbol).
_native_of, _canonical_of = separated("-")

VENUE: Final = Venue(
    name="okx",
    # OKX's most liquid spot pairs: eight against USDT, the two majors against USDC.
    default_symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT", "LINK/USDT",
                     "LTC/USDT", "BTC/USDC", "ETH/USDC"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    completeness="id-sequenced",  # trades-all: every trade, ids contiguous per instrument
    separator="-",
    recording_names=("OKX", "OKEX"),
)
