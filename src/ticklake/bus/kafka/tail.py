"""The newest messages of topics, read back from the partitions' ends: what the broker holds.

The feed role reads its trades topics' tails at start, to resume from the newest trade on the broker,
and after the broker lost its connection, to compare what it holds with what the feeds handed on
(exchanges/resume.py decides what the trades mean). A plain consumer, assigned offset ranges: it joins
no group and commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, TopicPartition

from ticklake.bus.base import PartitionKey
from ticklake.bus.codec import decode
from ticklake.bus.kafka.config import client_config
from ticklake.model import Message
from ticklake.settings import KafkaSettings


def read_tail(settings: KafkaSettings, topics: Iterable[str], enough: Callable[[], bool], window: int = 50_000,
              max_per_partition: int = 200_000, timeout_s: float = 30.0) -> Iterator[Message]:
    """The messages among the last ``window`` offsets of each partition of ``topics`` (topics the
    broker does not have are skipped), decoded, each with its partition and offset; then, once those
    were all handed over, for as long as ``enough()`` says no, the messages before them, in steps
    growing fourfold, up to ``max_per_partition`` back from each partition's end. A partition's
    messages come in offset order (partitions interleaved); each step waits at most ``timeout_s``."""
    consumer = Consumer({**client_config(settings), "group.id": f"{settings.group_id}-resume",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics
        partitions = [TopicPartition(topic, p) for topic in topics if topic in metadata
                      for p in metadata[topic].partitions]
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
            yield from _read_ranges(consumer, todo, timeout_s)
            if step >= max_per_partition or enough():
                break
            step = min(step * 4, max_per_partition)
    finally:
        consumer.close()


def _read_ranges(consumer: Consumer, ranges: dict[PartitionKey, tuple[int, int]], timeout_s: float
                 ) -> Iterator[Message]:
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
            message_key = kafka_message.key()
            value = decode(key[0], message_key, kafka_message.value(), kafka_message.headers())
            yield Message(key[0], (message_key or b"").decode("utf-8", "replace"), value, key[1], offset)
    consumer.unassign()
