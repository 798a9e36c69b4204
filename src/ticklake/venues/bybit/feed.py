"""Bybit spot (v5): the ``publicTrade`` topic of the public spot WebSocket.

Docs (bybit-exchange.github.io/docs/v5/ws/connect, .../v5/websocket/public/trade):

* endpoint ``wss://stream.bybit.com/v5/public/spot``; public topics need no authentication;
* subscribe with ``{"op":"subscribe","args":["publicTrade.BTCUSDT",...]}``, answered with
  ``{"success":true,"ret_msg":"","conn_id":...,"op":"subscribe"}``; "Spot can input up to 10 args for
  each subscription request sent to one connection", and one public connection's ``args`` may total
  at most 21,000 characters;
* heartbeat: "we recommend that you send the ping heartbeat packet every 20 seconds", as
  ``{"req_id":"100001","op":"ping"}`` (``req_id`` optional), answered on spot with ``{"success":true,
  "ret_msg":"pong","conn_id":...,"op":"ping"}``. Without ping-pong or stream data the server cuts the
  connection after 10 minutes. The client pings: Bybit sends no ping or heartbeat of its own;
* "Do not build over 500 connections in 5 minutes" per IP and WebSocket domain.

Bybit sends no snapshot on subscribing, and its spot trade ids are shared by all markets (mapper.py),
so a lost trade cannot be seen by id. The venue says so (``Venue.ids_count_trades`` False): every break
the feed can see (each new connection, each frame it could not read) fetches the markets' most recent
trades over REST (``rest.py``: the newest 60 only), and a break the page cannot cover is counted
(``ticklake_feed_backfill_short_total``). A trade lost on a connection that stays up, with no unreadable
frame, is not seen at all: best effort, as the venue allows.
"""

from __future__ import annotations

import orjson

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed

MAX_ARGS_PER_SUBSCRIBE = 10  # spot's documented cap per subscribe message


class BybitFeed(RealtimeFeed):
    exchange = "bybit"
    default_url = "wss://stream.bybit.com/v5/public/spot"
    # 50 topics ("publicTrade.BTCUSDT": ~20 characters) stay far under 21,000 characters of args, and
    # bound what one dropped connection takes down with it.
    max_symbols_per_connection = 50
    keepalive_message = '{"op":"ping"}'
    keepalive_after_s = 20.0
    keepalive_periodic = True  # every 20 s, whatever the traffic (not only after a silence as OKX)
    # The pong to our ping every 20 s is a frame even when nothing trades: three missing, the connection
    # is dead.
    stale_timeout_s = 60.0
    max_connects = (500, 300.0)

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        topics = [f"publicTrade.{native}" for native in natives]
        return [orjson.dumps({"op": "subscribe", "args": topics[start:start + MAX_ARGS_PER_SUBSCRIBE]}).decode()
                for start in range(0, len(topics), MAX_ARGS_PER_SUBSCRIBE)]


FEED = BybitFeed
