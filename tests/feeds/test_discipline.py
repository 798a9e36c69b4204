"""Connection discipline that needs no venue: the per-connection message budget."""

from __future__ import annotations

import asyncio

from ticklake.exchanges.feeds.session import Session as _Session
from ticklake.venues.binance.feed import BinanceFeed
from ticklake.venues.coinbase.feed import CoinbaseFeed
from ticklake.venues.kraken.feed import KrakenFeed


def test_the_message_budget_counts_the_last_second() -> None:
    session = _Session("binance-test")
    assert session.control_wait(5, 100.0) == 0.0
    session.control_sent.extend([100.0, 100.1, 100.2, 100.3, 100.4])  # five, pongs included
    assert session.control_wait(5, 100.5) == 0.5  # the sixth waits until the first is a second old
    assert session.control_wait(5, 101.05) == 0.0  # the first has left the window
    assert list(session.control_sent) == [100.1, 100.2, 100.3, 100.4]
    assert session.control_wait(None, 101.05) == 0.0  # no budget: never waits


def test_venue_rules() -> None:
    assert BinanceFeed.max_messages_per_s == 5 and BinanceFeed.rotates  # 5 messages/s; ends at 24 h
    assert not KrakenFeed.rotates and not CoinbaseFeed.rotates
    # Coinbase: both subscribe messages well inside the 5 s deadline, one channel each.
    messages = CoinbaseFeed(["BTC/USD"], bus=None, ws_url="ws://127.0.0.1:1").subscribe_messages(["BTC-USD"])  # type: ignore[arg-type]
    assert len(messages) * CoinbaseFeed.send_interval_s < 5.0
    assert [m.count('"channel"') for m in messages] == [1, 1]


async def test_connection_attempts_stay_within_the_venues_limit() -> None:
    """Binance allows 300 connection attempts per 5 minutes per IP; the feed waits rather than exceed it."""
    from ticklake.model import Message
    from ticklake.venues.binance.feed import BinanceFeed

    class Sink:
        async def publish(self, messages: list[Message]) -> None:
            pass

    assert BinanceFeed.max_connects == (300, 300.0)

    class Limited(BinanceFeed):
        max_connects = (2, 0.3)

    feed = Limited(["BTC/USDT"], Sink(), ws_url="ws://127.0.0.1:9")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        await feed.connect_slot()
    # 2 at once, 2 more after one window, the fifth after a second window
    assert 0.55 <= loop.time() - started < 1.5
