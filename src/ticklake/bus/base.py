"""The bus interface every bus implements, and the topic names.

Topics follow the production layout: raw frames on ``market.crypto.trades.{exchange}.raw``,
normalized trades on ``market.crypto.trades.{exchange}``, both keyed by canonical symbol so one
symbol's messages stay in order on one partition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import msgspec

from ticklake.model import RawFrame, Trade


def raw_topic(exchange: str) -> str:
    return f"market.crypto.trades.{exchange}.raw"


def trades_topic(exchange: str) -> str:
    return f"market.crypto.trades.{exchange}"


class Message(msgspec.Struct, frozen=True):
    topic: str
    key: str
    value: RawFrame | Trade


class Bus(Protocol):
    async def publish(self, messages: Sequence[Message]) -> None:
        """Hand messages to the bus, in order. Waits (back-pressure) while the bus is full."""
        ...

    def subscribe(self, topics: Sequence[str], max_batch: int, max_wait_s: float) -> AsyncIterator[list[Message]]:
        """Batches of messages from ``topics`` in publish order: up to ``max_batch`` messages, or
        whatever arrived within ``max_wait_s`` after the first one."""
        ...

    def depth(self) -> int:
        """Messages published but not yet taken by every subscriber (for metrics and health)."""
        ...
