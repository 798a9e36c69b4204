"""The distributed bus: a Kafka-API broker (Redpanda in production) through confluent-kafka.

- ``KafkaProducerBus`` is what the feed handlers publish to: idempotent, ``acks=all``, compressed,
  a bounded linger, Java-compatible key hashing (murmur2, so other clients agree on partitions).
  Undelivered messages are retried without a deadline while the broker is away, and the producer
  holds at most ``max_buffered_messages`` of them: beyond that ``publish`` waits, which slows the
  feed handlers down (back-pressure) instead of growing memory.
- ``KafkaSource`` is what the ingester reads: a consumer group whose start positions come from the
  warehouse (the ``positions`` callback), not from offsets committed to the broker, so the rows and
  the position they reached are stored together (docs/architecture.md, D10).
- ``create_topics`` and ``tail_resume_points`` serve ``ticklake topics`` and the feed role's start.

confluent-kafka's calls are thread-safe and release the GIL; each client here gets one thread of
its own (the producer's delivery reports, the consumer's polls) so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ticklake.bus.base import PartitionKey, PositionLoader, topics_for
from ticklake.bus.codec import REJECT_REASONS, decode, encode
from ticklake.exchanges.backfill import from_rest
from ticklake.exchanges.gaps import Resume, resume_from
from ticklake.model import Message, Trade, trades_topic
from ticklake.ops import metrics
from ticklake.settings import KafkaSettings

log = logging.getLogger(__name__)

_TIMED_OUT = KafkaError(KafkaError._MSG_TIMED_OUT).name()  # as a delivery report names it


def _common(settings: KafkaSettings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers, "client.id": settings.client_id, **settings.config}


# --- producing ---------------------------------------------------------------------------------
# Once an idempotent producer failed for good, confluent-kafka 2.16's flush() (and so, possibly,
# poll()) can raise the KafkaError itself, which is no exception class: ``except BaseException`` does
# not catch it, and a ThreadPoolExecutor worker running the call dies with its future never done (seen
# here: the feed hung). Calls that may meet it catch everything (a bare ``except``): "bare KafkaError".
class ProducerFailedError(RuntimeError):
    """The producer hit a fatal error and accepts nothing more until ``renew`` replaces it."""


class KafkaProducerBus:
    """The feed handlers' side of the Kafka bus (a ``MessageSink``)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer = self._new_producer()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer", daemon=True)
        self._poller.start()
        self.delivery_failures = 0
        self.fatal = ""  # set when the producer failed for good (``renew`` replaces it)
        # Set when a connection to a broker was lost: a broker that restarted uncleanly may have lost
        # messages it had acknowledged, so what it holds is worth a check (see Platform).
        self.broker_lost = False
        self._last_error_log = 0.0
        self._last_failure_log = 0.0
        self._topics: set[str] = set()  # the topics published to: their failure counts start at zero

    def _new_producer(self) -> Producer:
        settings = self.settings
        return Producer({
            **_common(settings),
            "enable.idempotence": True,  # retries never duplicate or reorder
            "acks": "all",
            "compression.type": settings.compression,
            "linger.ms": settings.linger_ms,
            "queue.buffering.max.messages": settings.max_buffered_messages,
            "message.timeout.ms": 0,  # keep retrying while the broker is away: back-pressure, not loss
            "partitioner": "murmur2_random",  # what Java clients and Redpanda tooling use
            "error_cb": self._on_error,
            "delivery.report.only.error": True,  # a report per failure, not per message
            **settings.config,
        })

    def _poll(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(0.1)  # serves delivery reports
            except KafkaException as exc:  # confluent-kafka raises a fatal error here, not through error_cb
                self._on_error(exc.args[0])
            except:  # noqa: E722 -- a bare KafkaError (see above)
                self._raised_bare("poll")

    def _raised_bare(self, call: str) -> None:
        """``call`` raised a bare KafkaError (see above): the producer failed for good."""
        self.fatal = self.fatal or f"{call}: {sys.exc_info()[1]}"
        time.sleep(0.1)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._FATAL:
            # The idempotent producer cannot go on (its sequence was lost): nothing more is accepted,
            # and what it held is gone. The feed role renews it and backfills what the broker does not
            # hold (Platform._watch_producer).
            self.fatal = str(error)
            log.critical("kafka producer failed for good: %s", error)
            return
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            # Messages the broker acknowledged may be gone if it went down uncleanly: see Platform.
            self.broker_lost = True
        # Client-level errors (all brokers down...) are retried by librdkafka: log, at most every 10 s.
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("kafka producer: %s (messages wait in the producer, up to %d)", error,
                        self.settings.max_buffered_messages)

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.delivery_failures += 1
            metrics.BUS_DELIVERY_FAILURES.labels(message.topic(), error.name()).inc()
            now = time.monotonic()
            if now - self._last_failure_log > 10:  # after a fatal error, every queued message fails
                self._last_failure_log = now
                log.error("a message to %s was not delivered: %s (%d so far)", message.topic(), error,
                          self.delivery_failures)

    async def publish(self, messages: Sequence[Message]) -> None:
        delivered = self._delivered
        if self.fatal:
            raise ProducerFailedError(self.fatal)
        for message in messages:
            value, headers = encode(message.value)  # type: ignore[arg-type]
            key = message.key.encode()
            while True:
                try:  # self._producer, not a bound method taken once: renew() may replace it meanwhile
                    self._producer.produce(message.topic, value, key, headers=headers, on_delivery=delivered)
                    break
                except BufferError:  # the producer holds max_buffered_messages: wait for the broker
                    metrics.BUS_PRODUCER_QUEUE.set(len(self._producer))
                    await asyncio.sleep(0.005)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError._FATAL:
                        raise
                    # librdkafka may report its fatal error here first (not through error_cb).
                    self.fatal = self.fatal or str(exc.args[0])
                    raise ProducerFailedError(self.fatal) from None
        for topic in {m.topic for m in messages}:
            metrics.BUS_PRODUCED.labels(topic).inc(sum(1 for m in messages if m.topic == topic))
            if topic not in self._topics:
                # The failure a producer that retries without limit reports (the broker out of reach for
                # message.timeout.ms) counts from zero; another reason shows when it first happens.
                self._topics.add(topic)
                metrics.BUS_DELIVERY_FAILURES.labels(topic, _TIMED_OUT)
        metrics.BUS_PRODUCER_QUEUE.set(len(self._producer))

    def depth(self) -> int:
        """Messages accepted but not yet acknowledged by the broker."""
        return len(self._producer)

    async def renew(self) -> int:
        """Replace a producer that failed for good by a fresh one (a new producer id, so a broker that
        forgot the old one's sequence numbers accepts it). Returns how many messages the old one still
        held: they are not delivered, and the caller finds them missing on the broker."""
        old = self._producer
        held = len(old)
        self._producer = self._new_producer()
        self.fatal = ""
        await asyncio.get_running_loop().run_in_executor(None, self._discard, old)
        return held

    @staticmethod
    def _discard(producer: Producer) -> None:
        try:
            producer.purge()  # its queued messages fail (delivery reports) instead of being retried
            producer.poll(0)
        except:  # noqa: E722 -- a failed producer may refuse both, even with a bare KafkaError; dropped
            pass

    def broker_reachable(self, timeout_s: float = 5.0) -> bool:
        try:
            self._producer.list_topics(timeout=timeout_s)
        except:  # noqa: E722 -- KafkaException, or a bare KafkaError from a failed producer
            return False
        return True

    async def flush(self, timeout_s: float = 30.0) -> int:
        """Wait until the broker has every message; returns how many are still undelivered. Returns
        early if the producer fails for good meanwhile. Waits on the poll thread's delivery reports
        rather than calling librdkafka's flush(), which can raise a bare KafkaError (see above)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = len(self._producer)
            if not remaining or self.fatal or time.monotonic() >= deadline:
                return remaining
            await asyncio.sleep(0.01)

    async def close(self, timeout_s: float = 30.0) -> None:
        remaining = len(self._producer) if self.fatal else await self.flush(timeout_s)
        if remaining:
            # Not lost for good: the feed's next start resumes from the broker's tail and backfills.
            log.error("%d messages were not delivered before stopping", remaining)
        self._closed.set()
        self._poller.join(timeout=2)


# --- consuming ---------------------------------------------------------------------------------
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
            **_common(self.settings),
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


# --- administration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicStatus:
    topic: str
    status: str  # "created" | "exists"
    partitions: int


def create_topics(settings: KafkaSettings, exchanges: Iterable[str], retention_hours: int,
                  timeout_s: float = 30.0, connect_timeout_s: float = 10.0) -> list[TopicStatus]:
    """Create every topic the enabled venues need; topics that exist are left as they are.

    Raises ``KafkaException`` saying so when no broker answers within ``connect_timeout_s``.
    """
    admin = AdminClient(_common(settings))
    wait_s = min(connect_timeout_s, timeout_s)
    try:  # librdkafka waits out the whole request timeout for an absent broker: ask for metadata first
        admin.list_topics(timeout=wait_s)
    except KafkaException as exc:
        reason = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else str(exc)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, f"no broker answered at {settings.bootstrap_servers} "
                                        f"within {wait_s:g} s ({reason})")) from None
    names = topics_for(exchanges)
    config = {"retention.ms": str(retention_hours * 3_600_000), "cleanup.policy": "delete"}
    wanted = [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor,
                       config=config) for name in names]
    statuses: dict[str, str] = {}
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            statuses[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                statuses[name] = "exists"
            else:
                raise
        except TimeoutError:  # the future's own timeout: the broker stopped answering midway
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no answer to creating {name} within "
                                            f"{timeout_s:g} s")) from None
    described = admin.list_topics(timeout=timeout_s).topics
    result = []
    for name in names:
        partitions = len(described[name].partitions) if name in described else 0
        if statuses[name] == "exists" and partitions != settings.partitions:
            log.warning("%s exists with %d partitions (settings say %d); left as it is", name, partitions,
                        settings.partitions)
        result.append(TopicStatus(name, statuses[name], partitions))
    return result


def tail_resume_points(settings: KafkaSettings, exchanges: Iterable[str], markets: set[tuple[str, str]] | None = None,
                       window: int = 50_000, max_per_partition: int = 200_000, timeout_s: float = 30.0
                       ) -> dict[tuple[str, str], Resume]:
    """Where each market's (exchange, native symbol) feed resumes, from the trades topics: the newest
    trade among the last ``window`` messages of each partition, and the holes below it
    (``gaps.resume_from``), so that what a stopped (or killed) feed never delivered, and a backfill it
    did not finish, are backfilled from the venue.

    Reads further back, in growing steps, while a market in ``markets`` was not seen, up to
    ``max_per_partition`` messages.
    """
    found = {}
    for market, ids in tail_trades(settings, exchanges, markets, window, max_per_partition, timeout_s).items():
        resume = resume_from(ids.items(), market[1])
        if resume is not None:
            found[market] = resume
    return found


_LAST = (2**63, 0)


def tail_trades(settings: KafkaSettings, exchanges: Iterable[str], markets: set[tuple[str, str]] | None = None,
                window: int = 50_000, max_per_partition: int = 200_000, timeout_s: float = 30.0
                ) -> dict[tuple[str, str], dict[int, int]]:
    """The trades the broker holds among the last ``window`` messages of each partition of the
    exchanges' trades topics: (exchange, native symbol) -> {trade id: exchange time µs}. Reads further
    back, in growing steps, while a market in ``markets`` was not seen, up to ``max_per_partition``.

    Only ids from the market's oldest *streamed* trade in what was read on are given: a backfill
    publishes old ids late, and the ids between those and the stream's were published before what
    was read, not lost."""
    consumer = Consumer({**_common(settings), "group.id": f"{settings.group_id}-resume",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    seen: dict[tuple[str, str], dict[int, int]] = {}
    first_streamed: dict[tuple[str, str], tuple[int, int]] = {}  # (offset, trade id), the lowest offset
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics
        partitions = [TopicPartition(trades_topic(exchange), p)
                      for exchange in exchanges if trades_topic(exchange) in metadata
                      for p in metadata[trades_topic(exchange)].partitions]
        bounds = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            if high > low:
                bounds[(tp.topic, tp.partition)] = (low, high)
        step = window
        read_from = {key: high for key, (_low, high) in bounds.items()}
        while True:
            todo = {}
            for key, (low, high) in bounds.items():
                start = max(low, high - step)
                if start < read_from[key]:
                    todo[key] = (start, read_from[key])
                    read_from[key] = start
            if not todo:
                break
            _read_ranges(consumer, todo, seen, first_streamed, timeout_s)
            if markets is None or markets <= seen.keys() or step >= max_per_partition:
                break
            step = min(step * 4, max_per_partition)
    finally:
        consumer.close()
    for market, (_offset, floor) in first_streamed.items():
        seen[market] = {i: ts for i, ts in seen[market].items() if i >= floor}
    return seen


def _read_ranges(consumer: Consumer, ranges: dict[PartitionKey, tuple[int, int]],
                 seen: dict[tuple[str, str], dict[int, int]], first_streamed: dict[tuple[str, str], tuple[int, int]],
                 timeout_s: float) -> None:
    consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _end) in ranges.items()])
    remaining = dict(ranges)
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        for kafka_message in consumer.consume(num_messages=10_000, timeout=0.5):
            key = (kafka_message.topic(), kafka_message.partition())
            if key not in remaining:
                continue
            error = kafka_message.error()
            end = remaining[key][1]
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.pop(key, None)
                continue
            offset = kafka_message.offset() or 0
            if offset >= end - 1:
                remaining.pop(key, None)
            if offset >= end:
                continue
            record = decode(key[0], kafka_message.key(), kafka_message.value(), kafka_message.headers())
            if isinstance(record, Trade):
                market = (record.exchange, record.native_symbol)
                seen.setdefault(market, {})[record.trade_id] = record.ts_us
                if not from_rest(record.conn_id) and (offset, record.trade_id) < first_streamed.get(market, _LAST):
                    first_streamed[market] = (offset, record.trade_id)
    consumer.unassign()
