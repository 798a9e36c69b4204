"""Pure mappers: one venue's frame in, normalized trades out. No I/O, no clocks, no globals.

Each venue module exposes ``parse_frame(payload, received_us, conn_id, frame_seq) -> ParsedFrame`` for
WebSocket frames (a feed also passes ``subscribed=``, its connection's native symbols) and
``parse_rest_trades(body, native_symbol, received_us, ...)`` for REST trade pages.
Golden tests on recorded frames exercise exactly these functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Set as AbstractSet
from typing import Protocol

from ticklake.model import ParsedFrame, Trade


class FrameParser(Protocol):
    def __call__(self, payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0, *,
                 subscribed: AbstractSet[str] | None = None) -> ParsedFrame:
        """``subscribed``: the native symbols the connection subscribed to; a trade of any other market
        keeps ``symbol=""`` (dead-lettered as ``unsubscribed_market``). None (re-parsing) checks nothing."""
        ...


VENUES = ("binance", "kraken", "coinbase")


def parser_for(exchange: str) -> FrameParser:
    """The pure parser of a venue's WebSocket frames."""
    if exchange not in VENUES:
        raise ValueError(f"unknown exchange: {exchange!r}")
    module = importlib.import_module(f"ticklake.exchanges.mappers.{exchange}")
    parser: FrameParser = module.parse_frame
    return parser


def rest_trades(exchange: str, body: str, native_symbol: str, received_us: int, conn_id: str = "",
                frame_seq: int = 0) -> tuple[Trade, ...]:
    """The trades of one REST trades page of a venue (raises ``MalformedResponse`` on a bad body)."""
    if exchange not in VENUES:
        raise ValueError(f"unknown exchange: {exchange!r}")
    module = importlib.import_module(f"ticklake.exchanges.mappers.{exchange}")
    result = module.parse_rest_trades(body, native_symbol, received_us, conn_id=conn_id, frame_seq=frame_seq)
    trades: tuple[Trade, ...] = result.trades if hasattr(result, "trades") else result
    return trades
