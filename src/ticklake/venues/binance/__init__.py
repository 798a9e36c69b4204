"""Binance spot: static facts (the code is in this folder's mapper, feed, rest and simulated modules)."""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, suffixed

# Binance native symbols have no separator: split on the longest known quote asset suffix.
QUOTES: Final[tuple[str, ...]] = (
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "DAI", "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL",
    "JPY", "AUD", "RUB", "UAH", "PAX", "USDP", "XRP", "DOGE", "TRX", "BIDR", "IDRT", "NGN", "ZAR", "PLN",
    "RON", "ARS", "MXN", "COP", "CZK", "VAI", "BVND", "AEUR", "EURI")

# Streams want the native symbol lowercase; frames carry it uppercase.
_native_of, _canonical_of = suffixed(QUOTES)

VENUE: Final = Venue(
    name="binance",
    default_symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "DOGE/USDT", "ADA/USDT",
                     "AVAX/USDT", "LINK/USDT", "LTC/USDT"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    completeness="id-sequenced",  # contiguous trade ids per market
    separator="",
    recording_names=("BINANCE", "BINANCE_US"),
)
