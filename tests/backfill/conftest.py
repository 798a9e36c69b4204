"""Fixtures for the backfill tests: the feed tests' simulator helpers, and REST clients for them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.feeds.conftest import FAST_LIMITS

# The feed tests' fixtures, re-exported for the tests here ("import x as x" marks a re-export).
from tests.feeds.conftest import backfilling as backfilling
from tests.feeds.conftest import bus as bus
from tests.feeds.conftest import feed_settings as feed_settings
from tests.feeds.conftest import running as running
from tests.feeds.conftest import taps as taps
from ticklake.exchanges.rest import RestClient
from ticklake.settings import FeedSettings
from ticklake.simulator import Simulator


def rest_client(sim: Simulator, **kwargs: object) -> RestClient:
    options = {"limits": FAST_LIMITS, "backoff_initial_s": 0.05, "backoff_max_s": 0.5, **kwargs}
    return RestClient(FeedSettings(rest_timeout_s=3.0), urls=sim.rest_urls, **options)  # type: ignore[arg-type]


@pytest.fixture
async def rest_clients() -> AsyncIterator[list[RestClient]]:
    """Clients a test opened; closed at its end."""
    opened: list[RestClient] = []
    yield opened
    for client in opened:
        await client.aclose()
