"""Binance spot: static facts (the code is in this folder's mapper, feed, rest and simulated modules)."""

from __future__ import annotations

from typing import Final

from ticklake.symbols import canonical
from ticklake.venues.facts import Venue

# Binance native symbols have no separator: split on the longest known quote asset suffix.
QUOTES: Final[tuple[str, ...]] = tuple(sorted(
    ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "DAI", "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL",
     "JPY", "AUD", "RUB", "UAH", "PAX", "USDP", "XRP", "DOGE", "TRX", "BIDR", "IDRT", "NGN", "ZAR", "PLN",
     "RON", "ARS", "MXN", "COP", "CZK", "VAI", "BVND", "AEUR", "EURI"),
    key=len, reverse=True))


def _native_of(base: str, quote: str) -> str:
    return f"{base}{quote}"  # streams want it lowercase; frames carry it uppercase


def _canonical_of(native: str) -> str:
    for quote in QUOTES:
        if native.endswith(quote) and len(native) > len(quote):
            return canonical(native[: -len(quote)], quote)
    return ""


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
