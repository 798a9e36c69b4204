"""Backoff: full jitter within [0, min(cap, base * 2**n)], reset after a stable connection."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ticklake.exchanges.feeds import Backoff, backoff_delay


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.001, max_value=600),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_full_jitter_stays_within_the_exponential_ceiling(attempt: int, base: float, cap: float,
                                                          seed: int) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** attempt)


def test_delays_spread_over_the_whole_range() -> None:
    rng = random.Random(1)
    draws = [backoff_delay(3, 0.5, 60.0, rng) for _ in range(2000)]
    # Full jitter: uniform over [0, 4], not clustered near the ceiling ("equal jitter") or at it.
    assert min(draws) < 0.1 and max(draws) > 3.9
    assert 1.8 < sum(draws) / len(draws) < 2.2


def test_ceiling_doubles_until_the_cap() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    backoff = Backoff(0.5, 10.0, 30.0, rng=Top())
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_reset_after_a_stable_connection_only() -> None:
    now = [0.0]
    backoff = Backoff(1.0, 60.0, stable_after_s=30.0, rng=random.Random(0), clock=lambda: now[0])
    for _ in range(4):
        backoff.next_delay()
    assert backoff.attempt == 4

    backoff.connected()
    now[0] += 5.0  # a short-lived connection: keep backing off
    backoff.disconnected()
    assert backoff.attempt == 4

    backoff.connected()
    now[0] += 30.0  # stayed up long enough: start over
    backoff.disconnected()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0
