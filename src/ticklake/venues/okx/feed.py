"""OKX spot: the ``trades-all`` channel (every trade, one per push) on the business endpoint.

Docs (www.okx.com/docs-v5, "WebSocket API": overview, connect, subscribe, notice; "Market data",
"All trades channel"): ``trades-all`` is served at ``wss://ws.okx.com:8443/ws/v5/business`` (not
``/public``, since the 2023 move of channels to ``/business``); subscribe with
``{"op":"subscribe","args":[{"channel":"trades-all","instId":"BTC-USDT"}, ...]}``, acknowledged per
argument with ``{"event":"subscribe","arg":{...},"connId":...}``. No snapshot is sent: trades missed
while disconnected show as a gap in the ids, filled from REST (``rest.py``).

Connection rules (same pages):

* "The connection will break automatically if the subscription is not established or data has not been
  pushed for more than 30 seconds": set a timer of N < 30 s at every message; when it fires, send the
  text ``ping`` and expect ``pong``; no answer within N seconds: reconnect. Here N = 20: ``ping``
  after 20 s without a frame (``keepalive_message``), reconnect after 40 s (``stale_timeout_s``).
* Connection requests: 3 per second per IP (``max_connects``). Subscribe, unsubscribe and login
  requests: 480 an hour per connection; we send one subscribe per connection. The args of one
  request may total at most 64 KB: 100 instruments are ~5 KB.
* ``{"event":"notice","code":"64008"}`` announces that the connection will be closed for a service
  upgrade: the connection is replaced with overlap (the mapper's "shutdown").
"""

from __future__ import annotations

import orjson

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed
from ticklake.venues.okx.mapper import ALL_TRADES


class OkxFeed(RealtimeFeed):
    exchange = "okx"
    default_url = "wss://ws.okx.com:8443/ws/v5/business"
    # No documented cap on channels per connection; 100 keeps one subscribe message ~5 KB (of 64 KB)
    # and bounds what one dropped connection takes down with it.
    max_symbols_per_connection = 100
    keepalive_message = "ping"
    keepalive_after_s = 20.0
    # The ping's answer must come within N = 20 s: 40 s without any frame means the connection is dead.
    stale_timeout_s = 40.0
    max_connects = (3, 1.0)  # 3 connection requests per second per IP

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        return [orjson.dumps({
            "op": "subscribe",
            "args": [{"channel": ALL_TRADES, "instId": native} for native in natives],
        }).decode()]


FEED = OkxFeed
