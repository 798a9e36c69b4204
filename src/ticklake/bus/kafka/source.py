"""The ingester's side of the Kafka bus: ``KafkaSource``, a consumer group whose start positions come
from the warehouse (see the package's docstring)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ticklake.bus.base import PartitionKey, PositionLoader
from ticklake.bus.codec import REJECT_REASONS, decode
from ticklake.bus.kafka.config import client_config
from ticklake.model import Message
from ticklake.ops import metrics
from ticklake.settings import KafkaSettings

log = logging.getLogger(__name__)


class KafkaSource:
    """Batches of decoded messages for the ingester, from a consumer group (a ``BatchSource``).

    The next batch is read while the ingester writes the current one (``writing`` / ``written``
    bracket each write). A rebalance runs inside a read; giving partitions up waits for the write
    in flight, and what a read returned for partitions revoked meanwhile is dropped, so a member is
    never writing a partition another member has started on.
    """

    def __init__(self, settings: KafkaSettings, topics: Sequence[str], positions: PositionLoader,
                 max_batch: int, max_wait_s: float) -> None:
        self.settings = settings
        self.topics = list(topics)
        self._positions = positions
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        # A member must not write after the group may have handed its partitions to another member: a
        # batch is given up (and read again after ``restart``) well before max.poll.interval.ms.
        self.give_up_after_s: float | None = settings.max_poll_interval_ms / 2000
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self._consumer: Consumer | None = None
        self._written_through: dict[PartitionKey, int] = {}
        self._start_offsets: dict[PartitionKey, int] = {}
        self._write_done = threading.Condition()
        self._writing = False
        self._rebalances = 0
        self._pending_commit: list[TopicPartition] = []
        self._lag: dict[PartitionKey, int] = {}
        self._lag_checked = 0.0
        self.assigned: set[PartitionKey] = set()
        self._closing = threading.Event()
        self._stop_reading = threading.Event()
        self.last_error = ""  # the consumer's last error (a failed group join, an unreachable broker)
        instance_id = settings.instance_id
        self.instance_id = socket.gethostname() if instance_id == "hostname" else instance_id
        for topic in self.topics:  # every count at zero from the start: a dashboard line, not "no data"
            metrics.BUS_CONSUMED.labels(topic)
            for reason in REJECT_REASONS:
                metrics.BUS_REJECTED.labels(topic, reason)

    def _open(self) -> Consumer:
        consumer = Consumer({
            **client_config(self.settings),
            "group.id": self.settings.group_id,
            "enable.auto.commit": False,  # positions live in the warehouse; broker commits are informational
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.settings.session_timeout_ms,
            "heartbeat.interval.ms": max(500, self.settings.session_timeout_ms // 6),
            # A batch is never retried for longer than half of this (see Ingester): a member is only
            # dropped from the group after it can no longer be writing.
            "max.poll.interval.ms": self.settings.max_poll_interval_ms,
            "partition.assignment.strategy": "range,roundrobin",
            "fetch.wait.max.ms": 10,
            **({"group.instance.id": self.instance_id} if self.instance_id else {}),
            **self.settings.config,
        })
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        return consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        positions = self._positions(keys)
        for tp in partitions:
            position = positions.get((tp.topic, tp.partition))
            next_offset = position.next_offset if position else None
            written_through = position.written_through if position else -1
            if next_offset is not None:
                next_offset, written_through = self._check_retained(consumer, tp, next_offset, written_through)
            tp.offset = next_offset if next_offset is not None else OFFSET_BEGINNING
            self._start_offsets[(tp.topic, tp.partition)] = next_offset if next_offset is not None else -1
            self._written_through[(tp.topic, tp.partition)] = written_through
        consumer.assign(partitions)
        self._rebalances += 1
        self.assigned |= set(keys)
        self.last_error = ""
        resumed = sum(1 for key in keys if positions.get(key) and positions[key].next_offset is not None)
        log.info("assigned %d partitions (%d resume from the warehouse's positions, %d from the start)",
                 len(keys), resumed, len(keys) - resumed)

    @staticmethod
    def _check_retained(consumer: Consumer, tp: TopicPartition, next_offset: int, written_through: int
                        ) -> tuple[int, int]:
        """The warehouse's position against what the broker holds; both ends can go wrong."""
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as exc:
            log.warning("%s[%d]: cannot check the broker's offsets (%s)", tp.topic, tp.partition, exc)
            return next_offset, written_through
        if next_offset > high:
            # The broker lost messages it had acknowledged (an unclean restart, a lost disk). The
            # offsets it hands out next were used before: read them all, and treat none of them as
            # already stored (they are other messages now). Trades lost with them show as holes in
            # the ids, which the feed backfills (gaps.resume_from, Platform.check_broker) and the
            # warehouse's completeness check finds.
            log.error("%s[%d]: the warehouse has read up to offset %d but the broker ends at %d: the broker lost "
                      "acknowledged messages; reading on from %d", tp.topic, tp.partition, next_offset, high, high)
            metrics.BUS_TRUNCATIONS.labels(tp.topic).inc()
            return high, min(written_through, high - 1)
        if next_offset < low:
            log.error("%s[%d]: offsets %d..%d expired on the broker before they were ingested (topic retention "
                      "shorter than the ingester's downtime)", tp.topic, tp.partition, next_offset, low - 1)
            metrics.BUS_EXPIRED.labels(tp.topic).inc(low - next_offset)
        return next_offset, written_through

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The next batch is read while the previous one is written: a member gives partitions up
        # only once that write is done, so it is never writing them when another member starts.
        with self._write_done:
            self._write_done.wait_for(lambda: not self._writing)
        self._rebalances += 1
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.discard(key)
            self._written_through.pop(key, None)
            if self._lag.pop(key, None) is not None:
                metrics.BUS_CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        self._pending_commit = [tp for tp in self._pending_commit if (tp.topic, tp.partition) in self.assigned]
        if partitions:
            log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _next_batch(self) -> list[Message]:
        """On the consumer thread: block until at least one message, then return what arrived."""
        if self._consumer is None:
            self._consumer = self._open()
        consumer = self._consumer
        if self._pending_commit:
            # Informational only (lag in standard tools); the warehouse holds the real positions.
            try:
                consumer.commit(offsets=self._pending_commit, asynchronous=True)
            except KafkaException as exc:
                log.debug("broker commit skipped: %s", exc)
            self._pending_commit = []
        while not self._closing.is_set() and not self._stop_reading.is_set():
            rebalances = self._rebalances
            raw = consumer.consume(num_messages=self.max_batch, timeout=self.max_wait_s)
            batch = self._decode(raw)
            if rebalances != self._rebalances:  # a rebalance inside this read: keep only what is still ours
                batch = [m for m in batch if (m.topic, m.partition) in self.assigned]
            self._update_lag(consumer)
            if batch:
                return batch
        return []

    def _decode(self, raw: list[Any]) -> list[Message]:
        batch: list[Message] = []
        written_through = self._written_through
        for kafka_message in raw:
            error = kafka_message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self.last_error = str(error)
                    log.warning("consumer: %s", error)
                continue
            topic = kafka_message.topic()
            partition = kafka_message.partition()
            offset = kafka_message.offset()
            key = kafka_message.key()
            value = decode(topic, key, kafka_message.value(), kafka_message.headers())
            batch.append(Message(topic, (key or b"").decode("utf-8", "replace"), value, partition, offset,
                                 offset <= written_through.get((topic, partition), -1)))
        for topic in {m.topic for m in batch}:
            metrics.BUS_CONSUMED.labels(topic).inc(sum(1 for m in batch if m.topic == topic))
        return batch

    def _update_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._lag_checked < 1.0:
            return
        self._lag_checked = now
        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in self.assigned])
            for tp in positions:
                low, high = consumer.get_watermark_offsets(tp, timeout=1, cached=False)
                # No position until a first message was read: then it is where the partition was assigned.
                position = tp.offset if tp.offset >= 0 else self._start_offsets.get((tp.topic, tp.partition), -1)
                lag = max(0, high - max(position, low))
                self._lag[(tp.topic, tp.partition)] = lag
                metrics.BUS_CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        except KafkaException as exc:
            log.debug("lag check skipped: %s", exc)

    def writing(self) -> None:
        """The ingester starts writing a batch (a rebalance waits for it to end)."""
        with self._write_done:
            self._writing = True

    def written(self, messages: Sequence[Message]) -> None:
        """The ingester wrote ``messages`` (or gave them up): rebalances may go on, and their positions
        are committed to the broker at the next read."""
        with self._write_done:
            self._writing = False
            self._write_done.notify_all()
        newest: dict[PartitionKey, int] = {}
        for message in messages:
            key = (message.topic, message.partition)
            newest[key] = max(newest.get(key, -1), message.offset)
        self._pending_commit = [TopicPartition(t, p, offset + 1) for (t, p), offset in newest.items()]

    def depth(self) -> int:
        """Messages on the assigned partitions not yet read (consumer lag), as of the last check."""
        return sum(self._lag.values())

    async def batches(self) -> AsyncIterator[list[Message]]:
        loop = asyncio.get_running_loop()
        # Read (and decode) the next batch while the caller writes this one: the two use different
        # threads, and through the broker reading costs about as much as writing.
        pending = loop.run_in_executor(self._thread, self._next_batch)
        try:
            while not self._closing.is_set():
                batch = await pending
                pending = loop.run_in_executor(self._thread, self._next_batch)
                if batch:
                    yield batch
        finally:
            pending.cancel()

    async def restart(self) -> None:
        """Leave the group and join again: positions are read from the warehouse afresh (used after
        a batch had to be abandoned)."""
        self._stop_reading.set()  # a read in progress returns within max_wait_s
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_consumer)
        self._stop_reading.clear()

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self.assigned.clear()
            self._written_through.clear()
            self._pending_commit = []

    async def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()  # a poll in progress returns within max_wait_s
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_consumer)
        self._thread.shutdown(wait=True)
