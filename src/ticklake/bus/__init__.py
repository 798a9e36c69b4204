"""The bus between feed handlers and the warehouse: in-process by default, Kafka API in production."""

from ticklake.bus.base import Bus, Message, raw_topic, topics_for, trades_topic
from ticklake.bus.memory import MemoryBus

__all__ = ["Bus", "MemoryBus", "Message", "raw_topic", "topics_for", "trades_topic"]
