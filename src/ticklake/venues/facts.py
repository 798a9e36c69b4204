"""What every part of ticklake may know about a venue without importing its code: its name, default
markets and how it spells a symbol. Pure data; shared like ``model`` and ``symbols`` (it imports no
layer), so settings, model and the API read the venue list from here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ticklake.symbols import canonical

# How completely a venue's trades can be collected, given what its APIs allow (docs/architecture.md,
# "Completeness per venue"); /v1/symbols says it per market:
# - "id-sequenced": a market's trade ids are contiguous, so every gap is seen and filled from REST;
# - "reconciled-by-time": ids are global (or sequenced per connection only): every break is followed by a
#   REST reconciliation over the time since the last trade stored, complete while the outage is within
#   the REST window;
# - "best-effort": the REST API cannot reach back far enough: what a break loses beyond it is counted.
Completeness = Literal["id-sequenced", "reconciled-by-time", "best-effort"]


@dataclass(frozen=True)
class Venue:
    name: str  # ticklake's name: the folder's, the topics', the API's ``exchange``
    default_symbols: tuple[str, ...]  # canonical symbols traded when the configuration names none
    # (BASE, QUOTE) -> the venue's native symbol, as its WebSocket API expects it.
    native_of: Callable[[str, str], str]
    # An upper-cased native symbol -> canonical BASE/QUOTE; "" when it cannot be mapped.
    canonical_of: Callable[[str], str]
    # What joins base and quote in a native symbol ("" for Binance's BTCUSDT): a mapper accepts a native
    # symbol only in this form (mappers/common.is_native_symbol).
    separator: str
    completeness: Completeness
    # Prefixes of cryptofeed recording file names (``BINANCE_US.ws.1.0``) that are this venue.
    recording_names: tuple[str, ...] = ()
    # Whether a market's trade ids count its trades (1, 2, 3 ...), so a hole in them is a missing trade.
    # False (Bybit spot: ids shared by all markets): no gap is looked for by id, anywhere (feed, broker
    # check, warehouse check); the feed instead fetches the venue's most recent trades after every break
    # it can see (``exchanges/backfill.py``, "catch-up").
    ids_count_trades: bool = True
    # The venue's own test of a native symbol's form, for a spelling ``separator`` (and ``lower_case``)
    # cannot describe (Bitfinex: ``tBTCUSD``, and ``tAVAX:USD`` with a colon only when an asset is longer
    # than three letters); None: the separator rule of ``mappers/common.is_native_symbol``.
    native_form: Callable[[str], bool] | None = None
    # Whether the venue spells its native symbols in lower case (Bitstamp ``btcusd``): a mapper accepts a
    # native symbol only in that case (mappers/common.is_native_symbol); ``from_native`` reads either.
    lower_case: bool = False


def separated(separator: str) -> tuple[Callable[[str, str], str], Callable[[str], str]]:
    """``native_of`` and ``canonical_of`` of a venue spelling symbols ``BASE<separator>QUOTE``."""

    def native_of(base: str, quote: str) -> str:
        return f"{base}{separator}{quote}"

    def canonical_of(native: str) -> str:
        parts = native.split(separator)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            return ""
        return canonical(parts[0], parts[1])

    return native_of, canonical_of


def suffixed(quotes: tuple[str, ...]) -> tuple[Callable[[str, str], str], Callable[[str], str]]:
    """``native_of`` and ``canonical_of`` of a venue spelling symbols ``BASEQUOTE`` with no separator
    (Binance, Bybit): a native symbol is split on the longest of ``quotes`` it ends with."""
    longest_first = tuple(sorted(quotes, key=len, reverse=True))

    def native_of(base: str, quote: str) -> str:
        return f"{base}{quote}"

    def canonical_of(native: str) -> str:
        for quote in longest_first:
            if native.endswith(quote) and len(native) > len(quote):
                return canonical(native[: -len(quote)], quote)
        return ""

    return native_of, canonical_of
