"""The feed handlers' side of the Kafka bus: ``KafkaProducerBus`` (see the package's docstring)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ticklake.bus.codec import encode
from ticklake.bus.kafka.config import client_config
from ticklake.model import Message
from ticklake.ops import metrics
from ticklake.settings import KafkaSettings

log = logging.getLogger(__name__)

_TIMED_OUT = KafkaError(KafkaError._MSG_TIMED_OUT).name()  # as a delivery report names it


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
            **client_config(settings),
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
