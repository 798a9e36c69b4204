"""An unreachable venue: one clear log line per attempt, status says why, no exception, clean stop."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from tests.support.processes import free_port
from ticklake.bus import MemoryBus
from ticklake.exchanges.feeds import feed_for
from ticklake.settings import FeedSettings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"ws://127.0.0.1:{free_port()}", None),
        ("wss://nonexistent.invalid", "wss://nonexistent.invalid/stream?..."),
    ],
    ids=["closed-port", "unresolvable-host"],
)
async def test_unreachable_venue_is_retried_and_reported(url: str, shown: str | None,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ticklake.feeds")
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.2, connect_timeout_s=2.0)
    feed = feed_for("binance", ["BTC/USDT", "ETH/USDT"], MemoryBus(), settings, url)
    task = asyncio.create_task(feed.run())
    deadline = asyncio.get_running_loop().time() + 5
    while feed.status().reconnects < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)

    status = feed.status()
    assert status.state in ("connecting", "backoff")
    assert status.connections == 0
    assert status.reconnects >= 2  # it keeps trying
    assert status.last_error
    if status.state == "backoff":
        assert status.next_retry_in_s is not None and 0 <= status.next_retry_in_s <= 0.2

    shown = shown or f"{url}/stream?..."
    pattern = re.compile(rf"binance: cannot connect to {re.escape(shown)}: .+; retrying in \d+\.\d s")
    lines = [r.getMessage() for r in caplog.records if r.name == "ticklake.feeds"]
    assert lines and all(pattern.fullmatch(line) for line in lines), lines
    assert status.last_error in lines[-1]
    assert not any(r.exc_info for r in caplog.records)  # no tracebacks for an expected condition

    await asyncio.wait_for(feed.stop(), 2)
    await asyncio.wait_for(task, 2)  # run() returned, it did not raise
    assert task.exception() is None
    assert feed.status().state == "stopped"
    assert feed.status().next_retry_in_s is None


async def test_closed_port_error_names_the_refusal() -> None:
    port = free_port()
    feed = feed_for("binance", ["BTC/USDT"], MemoryBus(), FeedSettings(backoff_initial_s=0.05), f"ws://127.0.0.1:{port}")
    task = asyncio.create_task(feed.run())
    while not feed.status().last_error:
        await asyncio.sleep(0.01)
    assert "111" in feed.status().last_error or "refused" in feed.status().last_error.lower()
    await feed.stop()
    await task
