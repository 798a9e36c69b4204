"""Gemini spot: static facts (the code is in this folder's mapper, feed, rest and simulated modules).

Docs relied on (docs.gemini.com / developer.gemini.com, checked December 2026): "Market Data v2"
(``websocket/market-data/v2/about``, ``.../v2/level-2-data``; now under ``websocket/archived/v2``),
"Market Data v1" and "Multi Market Data" (archived), REST "List Trades" (``GET /v1/trades/{symbol}``),
"Timestamps", "Rate Limits". What was unclear, and what was decided, is in docs/architecture.md
("Gemini") and in the module docstrings.
"""

from __future__ import annotations

from typing import Final

from ticklake.venues.facts import Venue, suffixed

# Gemini spells a pair BASEQUOTE with no separator (BTCUSD, ETHBTC, BTCGUSD, LTCBCH): split on the
# longest known quote suffix (the quotes of GET /v1/symbols, 2021 recording and the current list).
QUOTES: Final[tuple[str, ...]] = (
    "USD", "GUSD", "USDT", "USDC", "RLUSD", "DAI", "EUR", "GBP", "SGD", "AUD", "CAD", "BTC", "ETH", "BCH", "LTC")

_native_of, _canonical_of = suffixed(QUOTES)

VENUE: Final = Venue(
    name="gemini",
    # Gemini's most liquid spot books: against USD, plus ETH/BTC and BTC/EUR.
    default_symbols=("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "LTC/USD", "LINK/USD", "AVAX/USD",
                     "ETH/BTC", "BTC/EUR"),
    native_of=_native_of,
    canonical_of=_canonical_of,
    separator="",
    # Trade ids (tid, event_id) are exchange-wide, shared by all markets: a lost trade is not seen by id.
    # After every break the feed reconciles over REST by time (rest.py: GET /v1/trades?timestamp=,
    # forward, seven days back at most).
    completeness="reconciled-by-time",
    recording_names=("GEMINI",),
    ids_count_trades=False,
)
