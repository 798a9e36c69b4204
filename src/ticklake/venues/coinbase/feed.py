"""Coinbase Advanced Trade market data: ``heartbeats`` and ``market_trades``.

Docs (docs.cdp.coinbase.com, advanced-trade websocket overview and channels): endpoint
``wss://advanced-trade-ws.coinbase.com``; a ``subscribe`` must arrive within 5 s of connecting;
each subscribe message names ONE channel; "most channels close within 60-90 seconds if no updates
are sent", so ``heartbeats`` (one a second) is subscribed first, then ``market_trades`` for the
products. Each envelope carries a per-connection ``sequence_num`` (gaps are logged).
"""

from __future__ import annotations

import orjson

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed


class CoinbaseFeed(RealtimeFeed):
    exchange = "coinbase"
    default_url = "wss://advanced-trade-ws.coinbase.com"
    # No documented per-connection product cap; 100 bounds one subscribe message and what one
    # dropped connection takes down with it.
    max_symbols_per_connection = 100
    # Heartbeats come every second: ten missing means the connection is dead.
    stale_timeout_s = 10.0

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        # Two messages, 0.25 s apart (send_interval_s): both well within the 5 s subscribe deadline.
        return [
            orjson.dumps({"type": "subscribe", "channel": "heartbeats"}).decode(),
            orjson.dumps({"type": "subscribe", "channel": "market_trades", "product_ids": natives}).decode(),
        ]


FEED = CoinbaseFeed
