"""The distributed bus: a Kafka-API broker (Redpanda in production) through confluent-kafka.

One module per job:

- ``producer.py``: ``KafkaProducerBus``, what the feed handlers publish to: idempotent, ``acks=all``,
  compressed, a bounded linger, Java-compatible key hashing (murmur2, so other clients agree on
  partitions). Undelivered messages are retried without a deadline while the broker is away, and the
  producer holds at most ``max_buffered_messages`` of them: beyond that ``publish`` waits, which slows
  the feed handlers down (back-pressure) instead of growing memory.
- ``source.py``: ``KafkaSource``, what the ingester reads (a ``BatchSource``): a consumer group whose
  start positions come from the warehouse (the ``positions`` callback), not from offsets committed to
  the broker, so the rows and the position they reached are stored together (docs/architecture.md, D10).
- ``admin.py``: ``create_topics``, for ``ticklake topics``.
- ``tail.py``: ``read_tail``, the newest messages of topics, read back from their ends: what the broker
  holds (the feed role's resume and its check of the broker: exchanges/resume.py).
- ``config.py``: what every client starts from (the bootstrap servers, the client id, ``bus.kafka.config``).

confluent-kafka's calls are thread-safe and release the GIL; each client here gets one thread of
its own (the producer's delivery reports, the consumer's polls) so the event loop never blocks.
"""

from ticklake.bus.kafka.admin import TopicStatus, create_topics
from ticklake.bus.kafka.producer import KafkaProducerBus, ProducerFailedError
from ticklake.bus.kafka.source import KafkaSource
from ticklake.bus.kafka.tail import read_tail

__all__ = ["KafkaProducerBus", "KafkaSource", "ProducerFailedError", "TopicStatus", "create_topics", "read_tail"]
