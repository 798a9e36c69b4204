"""Bitfinex v2: the public ``trades`` channel, one subscription per pair, with ``SEQ_ALL`` sequencing.

Docs (docs.bitfinex.com: "WebSocket General", "Public Channels", "Configuration", "Trades"):

* endpoint ``wss://api-pub.bitfinex.com/ws/2`` for public channels (``api.bitfinex.com`` is for
  authenticated ones); the server opens with ``{"event":"info","version":2,...}``;
* ``{"event":"conf","flags":65536}`` (``SEQ_ALL``) first: from then on every channel message, heartbeats
  included, ends with the connection's sequence number, which the mapper reports so a jump (a lost
  frame) is a break the feed reconciles over REST;
* then one ``{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}`` per pair, each answered with
  ``{"event":"subscribed",...,"chanId":N}`` and a snapshot of recent trades;
* "You can subscribe to 25 channels at the same time on the same connection" (``ws-public``; an older
  announcement said 30, then 50: the current page is followed); past it ``{"event":"error",
  "code":10305}``. The rate limit of ``api-pub`` is "20 connections per minute";
* heartbeats ``[chanId,"hb"]`` come every 15 s per channel when it carries nothing else, so the server
  keeps the connection alive: no client keep-alive is needed (``{"event":"ping","cid":N}`` exists, and
  the simulator answers it, but the heartbeats already prove the connection alive);
* info 20051 ("please reconnect") and 20061 (maintenance ended: subscribe again) replace the connection
  with overlap (the mapper's "shutdown").

How fast a control message may follow another is not documented; 0.25 s apart (the shared default),
26 messages take 6.5 s to send.
"""

from __future__ import annotations

import orjson

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed
from ticklake.venues.bitfinex.mapper import TRADES

SEQ_ALL = 65536  # conf flag: a per-connection sequence number ends every channel message
MAX_CHANNELS_PER_CONNECTION = 25


class BitfinexFeed(RealtimeFeed):
    exchange = "bitfinex"
    default_url = "wss://api-pub.bitfinex.com/ws/2"
    max_symbols_per_connection = MAX_CHANNELS_PER_CONNECTION  # one trades channel per pair
    # Every channel sends a heartbeat after 15 s without data: 35 s without any frame is two missed.
    stale_timeout_s = 35.0
    max_connects = (20, 60.0)  # 20 connections per minute on api-pub
    # SEQ_ALL numbers every channel message of a connection: a frame lost on it is a sequence jump, a
    # break that is reconciled at once. Periodic reads would find nothing, and spend a REST budget of a
    # few requests a minute (rest.py).
    periodic_reconcile = False

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        conf = orjson.dumps({"event": "conf", "flags": SEQ_ALL}).decode()
        return [conf, *(orjson.dumps({"event": "subscribe", "channel": TRADES, "symbol": native}).decode()
                        for native in natives)]


FEED = BitfinexFeed
