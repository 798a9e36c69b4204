"""Gemini: market data v2, ``l2`` subscriptions (trades come with the book; there is no trades-only one).

Docs (docs.gemini.com websocket/market-data/v2 "About", "Level 2 Data"; archived since the new
WebSocket API, still served): endpoint ``wss://api.gemini.com/v2/marketdata``; public, no
authentication; subscribe with ``{"type":"subscribe","subscriptions":[{"name":"l2","symbols":[...]}]}``.
The names are ``l2`` and ``candles_*``: trades are only had through ``l2``, which also streams every
book change. The first ``l2_updates`` of each symbol carries the book and its last 50 trades.

Keep-alive: the server sends ``{"type":"heartbeat","timestamp":ms}`` every 5 s (the 2021 recording:
heartbeats 5.0 s apart; the v1 pages document 5 s heartbeats); v2 documents no client ping and no idle
rule, so the client sends nothing: three missed heartbeats (15 s silent) and the connection is dead.

Limits: v2 documents none per connection (symbols, subscriptions) and no connection rate. The public
REST limit is 120 requests a minute; a connection is not a request, but connecting as often would be
as rude: at most one connection attempt a second here. 20 symbols a connection: the whole book of
each rides on it (the recording: 655 book frames against 16 trades in 30 s over 10 symbols).

Why v2 and not v1 (decided; docs/architecture.md "Gemini"): v1 ``/v1/multimarketdata?symbols=..&
trades=true&bids=false&offers=false&heartbeat=true`` would stream trades only and number every
message of a connection (``socket_sequence``, heartbeats included), so a frame lost on a live
connection would show. But v1 trade events carry ``makerSide`` (``auction`` for auction fills) and
the time on the envelope only, and the only real Gemini recording ticklake has is v2: its golden test
checks this mapper against what Gemini actually sent. v2 has no per-connection sequence, so a
frame lost on a connection that stays up is caught by the feed's periodic reconciliation only
(``feed.reconcile_every_s``), never by a sequence jump. Gemini's trade ids are exchange-wide
(``mapper.py``): every break is reconciled over REST by time (``rest.py``).

No maintenance or reconnect notice is documented: a server going away just closes.
"""

from __future__ import annotations

import orjson

from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed

L2: str = "l2"


class GeminiFeed(RealtimeFeed):
    exchange = "gemini"
    default_url = "wss://api.gemini.com/v2/marketdata"
    max_symbols_per_connection = 20
    # Heartbeats every 5 s: 15 s without any frame is three missed.
    stale_timeout_s = 15.0
    max_connects = (1, 1.0)

    def subscribe_messages(self, natives: list[str]) -> list[str]:
        return [orjson.dumps({"type": "subscribe", "subscriptions": [{"name": L2, "symbols": natives}]}).decode()]


FEED = GeminiFeed
