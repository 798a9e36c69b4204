"""The venue's cap on connection attempts (Binance: 300 per 5 minutes per IP), shared by all of a
feed's connections: repeated breaches get an IP banned, so an attempt waits for a slot instead."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

log = logging.getLogger("ticklake.feeds")


class ConnectLimiter:
    """At most ``count`` connection attempts per ``window`` seconds (no limit when ``limit`` is None)."""

    def __init__(self, exchange: str, limit: tuple[int, float] | None) -> None:
        self.exchange = exchange
        self.limit = limit
        self._times: deque[float] = deque()  # monotonic times of recent connection attempts

    async def slot(self) -> None:
        """Wait until one more connection attempt stays within the limit, and count it."""
        if self.limit is None:
            return
        count, window = self.limit
        times = self._times
        while True:
            now = time.monotonic()
            while times and now - times[0] >= window:
                times.popleft()
            if len(times) < count:
                times.append(now)
                return
            wait = window - (now - times[0])
            log.warning("%s: %d connection attempts in %g s, the venue's limit: waiting %.1f s", self.exchange,
                        count, window, wait)
            await asyncio.sleep(wait)
