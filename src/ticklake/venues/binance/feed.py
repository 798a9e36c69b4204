"""Binance spot: the ``@trade`` streams of a combined-stream connection.

Docs (binance-spot-api-docs ``web-socket-streams.md``, developers.binance.com): base endpoint
``wss://stream.binance.com:9443``; combined streams at ``/stream?streams=<s1>/<s2>``, events wrapped
as ``{"stream", "data"}``; stream names lowercase; at most 1024 streams per connection; at most 5
incoming messages a second (pings, pongs and JSON control messages count); the server pings every
20 s and disconnects when no pong echoes the payload within a minute; connections end at 24 h.

Subscribing through the URL means no control message is ever sent: the only messages we send are
the pongs, one per 20 s, far under the 5/s limit (``max_messages_per_s`` holds any future control
message to it, pongs counted).

Connections end at 24 h, and a ``serverShutdown`` event announces an earlier end: either way the
connection is replaced with overlap (``rotates``, ``feed.rotate_after_s``; see ``realtimefeed``), so
the switch loses no trade.
"""

from __future__ import annotations

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed


class BinanceFeed(RealtimeFeed):
    exchange = "binance"
    default_url = "wss://stream.binance.com:9443"
    # The hard cap is 1024 streams. 200 keeps the connect URL (~18 bytes a stream) near 4 KB, under
    # common request-line limits, and limits what one dropped connection takes down with it.
    max_symbols_per_connection = 200
    # No heartbeats, but a ping every 20 s even when no symbol trades: three silent ping intervals
    # mean the connection is dead (Binance itself waits a minute for a pong).
    stale_timeout_s = 60.0
    max_messages_per_s = 5
    max_connects = (300, 300.0)  # 300 connection attempts per 5 minutes per IP
    rotates = True

    def connect_url(self, base_url: str, natives: list[str]) -> str:
        streams = "/".join(f"{native.lower()}@trade" for native in natives)
        return f"{base_url}/stream?streams={streams}"


FEED = BinanceFeed
