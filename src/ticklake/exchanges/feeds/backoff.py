"""Reconnect pacing: exponential backoff with full jitter, reset once a connection proved stable."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(max_s, initial_s * 2**attempt)]``.

    Full jitter spreads the reconnects of many clients (or many connections of ours) after a venue
    outage instead of having them all retry in lock step (AWS Architecture Blog, "Exponential
    Backoff And Jitter").
    """
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 64))
    return rng.uniform(0.0, ceiling)


class Backoff:
    """Attempt counter for one connection; reset once a connection stayed up ``stable_after_s``."""

    def __init__(self, initial_s: float, max_s: float, stable_after_s: float,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.stable_after_s = stable_after_s
        self.attempt = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._up_since: float | None = None

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempt, self.initial_s, self.max_s, self._rng)
        self.attempt += 1
        return delay

    def connected(self) -> None:
        self._up_since = self._clock()

    def disconnected(self) -> None:
        """A connection ended; if it had been stable, start over from the initial delay."""
        if self._up_since is not None and self._clock() - self._up_since >= self.stable_after_s:
            self.attempt = 0
        self._up_since = None
