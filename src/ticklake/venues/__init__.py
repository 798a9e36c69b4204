"""The venue registry: one folder per venue under ``ticklake/venues/<name>/``, listed once in ``FOLDERS``.

A folder holds everything about its venue (docs/architecture.md, "Adding a venue"):

* ``__init__.py``: ``VENUE``, its static facts (``facts.Venue``: default symbols, symbol spelling);
  pure, so shared modules (settings, model) and every layer may read it;
* ``mapper.py``: the pure parser (``parse_frame``, ``parse_rest_trades``);
* ``feed.py``: ``FEED``, the ``RealtimeFeed`` subclass saying only the connection facts;
* ``rest.py``: ``FETCHER``, the REST trades fetcher with the REST URL and rate limit;
* ``simulated.py``: ``SERVER``, the simulator's server speaking the venue's protocol.

Code parts are found by those names (``ticklake.exchanges.registry``, ``ticklake.simulator.registry``),
so adding a venue adds its folder and one name to ``FOLDERS``, nothing else.
"""

from __future__ import annotations

import importlib
from typing import Final

from ticklake.symbols import split_canonical
from ticklake.venues.facts import Venue

FOLDERS: Final = ("binance", "kraken", "coinbase", "okx", "bybit", "bitstamp", "gemini", "bitfinex")

VENUES: Final[dict[str, Venue]] = {name: importlib.import_module(f"ticklake.venues.{name}").VENUE for name in FOLDERS}
NAMES: Final[tuple[str, ...]] = tuple(VENUES)

__all__ = ["NAMES", "VENUES", "Venue", "from_native", "to_native", "venue"]


def venue(name: str) -> Venue:
    """The facts of a registered venue; ValueError naming the known ones otherwise."""
    try:
        return VENUES[name]
    except KeyError:
        raise ValueError(f"unknown exchange: {name!r} (known: {', '.join(NAMES)})") from None


def to_native(exchange: str, symbol: str) -> str:
    """The venue's spelling of a canonical symbol, as its WebSocket API expects it."""
    base, quote = split_canonical(symbol)
    return venue(exchange).native_of(base, quote)


def from_native(exchange: str, native: str) -> str:
    """The canonical symbol of a venue's native symbol; ``""`` when it cannot be mapped."""
    known = VENUES.get(exchange)
    return known.canonical_of(native.upper()) if known is not None else ""
