"""What changed in the warehouse, as a version number per market, so that a reader in the same process
can keep an answer exactly as long as it is true (the API's candle cache, api/candle_cache.py).

The writer touches the markets of every batch once its inserts are done, and whatever rewrites
candles (a gold recompute) touches them all. A version read before a query and stored with its answer
is therefore never newer than the data the answer was read from: an answer kept under an older
version than the current one is simply read again.
"""

from __future__ import annotations

from collections.abc import Iterable

Market = tuple[str, str]  # (exchange, canonical symbol)


class StoredChanges:
    def __init__(self) -> None:
        self._everything = 0
        self._markets: dict[Market, int] = {}

    def touch(self, markets: Iterable[Market]) -> None:
        for market in set(markets):
            self._markets[market] = self._markets.get(market, 0) + 1

    def touch_everything(self) -> None:
        self._everything += 1

    def version(self, market: Market) -> tuple[int, int]:
        return self._everything, self._markets.get(market, 0)
