"""What every Kafka client of ticklake starts from: the broker, the client id, and any other
librdkafka property of ``bus.kafka.config`` (which wins over what a client sets before it)."""

from __future__ import annotations

from typing import Any

from ticklake.settings import KafkaSettings


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers, "client.id": settings.client_id, **settings.config}
