"""Topic administration: ``create_topics``, what ``ticklake topics`` runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ticklake.bus.base import topics_for
from ticklake.bus.kafka.config import client_config
from ticklake.settings import KafkaSettings

log = logging.getLogger(__name__)


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
    admin = AdminClient(client_config(settings))
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
