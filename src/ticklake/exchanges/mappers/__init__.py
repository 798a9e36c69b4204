"""Pure mappers: one venue's frame in, normalized trades out. No I/O, no clocks, no globals.

Each venue module exposes ``parse_frame(payload, received_us, conn_id, frame_seq) -> ParsedFrame``.
Golden tests on recorded frames exercise exactly these functions.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from ticklake.model import ParsedFrame


class FrameParser(Protocol):
    def __call__(self, payload: bytes | str, received_us: int, conn_id: str = "", frame_seq: int = 0) -> ParsedFrame:
        ...


VENUES = ("binance", "kraken", "coinbase")


def parser_for(exchange: str) -> FrameParser:
    """The pure parser of a venue's WebSocket frames."""
    if exchange not in VENUES:
        raise ValueError(f"unknown exchange: {exchange!r}")
    module = importlib.import_module(f"ticklake.exchanges.mappers.{exchange}")
    parser: FrameParser = module.parse_frame
    return parser
