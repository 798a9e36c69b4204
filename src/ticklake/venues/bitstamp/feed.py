"""Bitstamp: the ``live_trades_<market>`` channels of the public WebSocket API v2.

Docs (www.bitstamp.net/websocket/v2/: "Connection", "Subscriptions", "Channels", "Heartbeat", "Forced
reconnection", "Maximum connection age"):

* endpoint ``wss://ws.bitstamp.net``; public channels need no authentication;
* one channel per message: ``{"event":"bts:subscribe","data":{"channel":"live_trades_btcusd"}}``, answered
  with ``{"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}``. No cap on
  channels per connection and no message rate limit is documented; the recording (cryptofeed, 2022) sent
  20 subscribe messages within half a millisecond and every one was answered. Here: 50 markets a
  connection (bounds what one dropped connection takes down), their messages 20 ms apart (one second
  for 50, instead of the shared 0.25 s spacing made for venues that cap messages per second);
* heartbeat: "If you wish to determine that websocket server is responding", send
  ``{"event":"bts:heartbeat"}``, answered with ``{"event":"bts:heartbeat","channel":"","data":{"status":
  "success"}}``. Optional: the server sends no heartbeat or ping of its own and no idle timeout is
  documented. A quiet market carries no frame for minutes, though, and silence is the only sign of a
  half-open connection: so the feed sends the heartbeat after 10 s without a frame (as crypto-ws-client
  does, every 10 s) and reconnects after 30 s without any (three unanswered heartbeats);
* forced reconnection: before maintenance the server sends ``{"event":"bts:request_reconnect", ...}``;
  clients should reconnect. The mapper reports it as "shutdown": the connection is replaced with overlap;
* "Maximum connection age is 90 days": the server then closes the connection; it is reconnected like any
  other end (a break, reconciled from REST), not rotated ahead (90 days is beyond any deployment's
  restart cadence).

No snapshot is sent on subscribing, and trade ids are one sequence for all markets (mapper.py): a lost
trade cannot be found by id. Every break (a new connection, an unreadable frame, the periodic tick) is
reconciled by time over REST (``rest.py``, ``Venue.completeness`` "reconciled-by-time").
"""

from __future__ import annotations

import orjson

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed
from ticklake.venues.bitstamp.mapper import CHANNEL_PREFIX

HEARTBEAT = '{"event":"bts:heartbeat"}'


class BitstampFeed(RealtimeFeed):
    exchange = "bitstamp"
    default_url = "wss://ws.bitstamp.net"
    max_symbols_per_connection = 50
    send_interval_s = 0.02  # one subscribe message per channel; no message rate limit is documented
    keepalive_message = HEARTBEAT
    keepalive_after_s = 10.0  # after 10 s without a frame (not periodic: any frame proves the connection)
    stale_timeout_s = 30.0  # three heartbeats unanswered

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        return [orjson.dumps({"event": "bts:subscribe", "data": {"channel": f"{CHANNEL_PREFIX}{native}"}}).decode()
                for native in natives]


FEED = BitstampFeed
