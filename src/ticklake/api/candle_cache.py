"""Answers of /v1/ohlcv kept as long as they are true, so that a chart polling its candles does not
query the warehouse for every request (issue 10: one query for 500 candles costs ~10 ms of CPU, which
caps a connection near 100 requests/s even on an idle machine).

An answer is kept with the version of its market (warehouse/changes.py) read *before* its query: the
writer bumps a market's version once a batch of its trades is stored, so an answer kept under the
current version holds everything stored when it was read, and any answer that may be older is read
again. Answers also expire after ``max_age_s``: the tier boundary (api/tiers.py) moves with the clock.
Only the warm tier's answers are kept. Everything runs on the event loop: no locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable

from ticklake.ops.metrics import API_CACHE
from ticklake.warehouse.changes import Market, StoredChanges

Version = tuple[int, int]


class CandleCache:
    def __init__(self, changes: StoredChanges, max_entries: int = 1024, max_age_s: float = 60.0) -> None:
        self.changes = changes
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._entries: OrderedDict[Hashable, tuple[Version, float, bytes]] = OrderedDict()
        for result in ("hit", "miss"):  # at zero from the start: a dashboard line, not "no data"
            API_CACHE.labels(result)

    def version(self, market: Market) -> Version:
        return self.changes.version(market)

    def get(self, market: Market, key: Hashable) -> bytes | None:
        entry = self._entries.get(key)
        if entry is not None:
            version, stored_at, body = entry
            if version == self.changes.version(market) and time.monotonic() - stored_at < self.max_age_s:
                self._entries.move_to_end(key)
                API_CACHE.labels("hit").inc()
                return body
            del self._entries[key]
        API_CACHE.labels("miss").inc()
        return None

    def put(self, key: Hashable, version: Version, body: bytes) -> None:
        self._entries[key] = (version, time.monotonic(), body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
