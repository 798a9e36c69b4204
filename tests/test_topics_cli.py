"""``ticklake topics`` as an operator runs it: a separate process against a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.broker import Broker
from tests.support.processes import env_for, free_port, ticklake
from ticklake.venues import NAMES

# Every registered venue's topics, in registry order, but coinbase's: kafka_env disables it.
VENUE_TOPICS = [topic for name in NAMES if name != "coinbase"
                for topic in (f"market.crypto.trades.{name}.raw", f"market.crypto.trades.{name}")]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    # A broker of its own: the topic names are fixed per venue, so a shared broker may already hold them.
    own = Broker(tmp_path / "broker").start()
    try:
        yield own
    finally:
        own.remove()


def kafka_env(tmp_path: Path, bootstrap: str, **extra: str) -> dict[str, str]:
    return env_for(tmp_path / "data", TICKLAKE_BUS__KIND="kafka", TICKLAKE_BUS__KAFKA__BOOTSTRAP_SERVERS=bootstrap,
                   TICKLAKE_VENUES__COINBASE__ENABLED="false", **extra)


def test_topics_creates_each_enabled_venues_topics_then_reports_them_as_existing(
        tmp_path: Path, broker: Broker) -> None:
    env = kafka_env(tmp_path, broker.bootstrap, TICKLAKE_BUS__KAFKA__PARTITIONS="3",
                    TICKLAKE_BUS__KAFKA__RETENTION_HOURS="5")
    first = ticklake("topics", env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"{topic}: created, 3 partitions" for topic in VENUE_TOPICS]

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    on_broker = admin.list_topics(timeout=10).topics
    for topic in VENUE_TOPICS:
        assert len(on_broker[topic].partitions) == 3, topic
    assert not [t for t in on_broker if "coinbase" in t]  # a disabled venue gets no topics
    configs = admin.describe_configs([ConfigResource("topic", VENUE_TOPICS[1])])
    config = next(iter(configs.values())).result(timeout=10)
    assert config["retention.ms"].value == str(5 * 3_600_000)
    assert config["cleanup.policy"].value == "delete"

    # Again, now asking for more partitions: nothing is changed, the operator is told so.
    again = ticklake("topics", env={**env, "TICKLAKE_BUS__KAFKA__PARTITIONS": "5"}, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"{topic}: exists, 3 partitions" for topic in VENUE_TOPICS]
    assert "left as it is" in again.stderr
    on_broker = admin.list_topics(timeout=10).topics
    assert all(len(on_broker[topic].partitions) == 3 for topic in VENUE_TOPICS)


def test_topics_with_the_embedded_bus_is_a_clear_usage_error(tmp_path: Path) -> None:
    result = ticklake("topics", env=env_for(tmp_path), timeout=60)
    assert result.returncode == 2
    assert "TICKLAKE_BUS__KIND=kafka" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_topics_with_an_unreachable_broker_fails_clearly_within_bounded_time(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = ticklake("topics", env=kafka_env(tmp_path, address), timeout=90)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"ticklake: cannot create topics on {address}" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert elapsed < 20, f"took {elapsed:.1f} s to give up"
