"""The bus interface every bus implements.

Topics follow the production layout: raw frames on ``market.crypto.trades.{exchange}.raw``,
normalized trades on ``market.crypto.trades.{exchange}``, both keyed by canonical symbol so one
symbol's messages stay in order on one partition. ``Message`` and the topic names live in
``ticklake.model`` with the other records, so the feed handlers need nothing from this package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ticklake.model import Message, raw_topic, trades_topic

__all__ = ["BatchSource", "Bus", "Message", "PartitionKey", "Position", "PositionLoader", "raw_topic", "topics_for",
           "trades_topic"]

PartitionKey = tuple[str, int]  # (topic, partition)


def topics_for(exchanges: Iterable[str]) -> list[str]:
    """Every topic the venues ``exchanges`` publish to (raw frames, then trades, venue by venue)."""
    return [topic for exchange in exchanges for topic in (raw_topic(exchange), trades_topic(exchange))]


@dataclass(frozen=True)
class Position:
    """Where the warehouse says a Kafka topic partition stands."""

    next_offset: int | None  # the first offset not yet completely written; None: nothing stored yet
    # The highest offset any stored row came from (-1: none). At or below it, and at or above
    # next_offset, a message may be partly stored already (a crash between one batch's inserts).
    written_through: int


PositionLoader = Callable[[list[PartitionKey]], dict[PartitionKey, Position]]


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


class BatchSource(Protocol):
    """Where the ingester takes its batches from: a subscription to the embedded bus
    (``MemoryBus.source``), or a Kafka consumer group (``KafkaSource``). Each source is made with the
    size and wait bounds of its batches; the ingester reads them in order and brackets the write of
    each with ``writing`` and ``written``, so that a Kafka source never hands a partition to another
    member while this one is writing it, and commits a batch's positions only once it is stored."""

    # A batch that could not be written for this long is given up and read again after ``restart``
    # (a Kafka member must stop writing before the group may hand its partitions on); None: a batch is
    # retried until it is written.
    give_up_after_s: float | None

    def batches(self) -> AsyncIterator[list[Message]]:
        """The batches, in order (one iteration at a time; after ``restart``, call again)."""
        ...

    def writing(self) -> None:
        """The ingester starts writing the batch it was last handed."""
        ...

    def written(self, messages: Sequence[Message]) -> None:
        """The write ended: the warehouse holds ``messages`` (empty when the batch was given up)."""
        ...

    def depth(self) -> int:
        """Messages waiting for the ingester (for the backlog metric, health and draining)."""
        ...

    async def restart(self) -> None:
        """Read again what was not written, from where the warehouse stands."""
        ...
