"""The production catalog: Iceberg REST + S3, on a real SeaweedFS (``weed mini``, tests/seaweed.py).

The same offloader as with the embedded catalog (tests/lake/test_offload.py), through the settings
a deployment uses. What exactly-once relies on is checked against this catalog too: it must refuse a
commit whose base snapshot is no longer the branch head (the requirement pyiceberg sends), also when
offloaders commit at the same instant. And an object store that goes away, or hangs, fails an
offload with an error (OSError) within bounded time, while the warm tier keeps taking rows; once
it is back, the next run catches up, once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, OAuthError
from pyiceberg.table import Table

from tests.seaweed import TABLE_BUCKET, Seaweed
from tests.support.lake import LAG_S, rows, settle, tape, warm, write
from ticklake.lake.catalog import open_catalog
from ticklake.lake.offload import (
    Batch,
    OffloadResult,
    closed_before,
    commit,
    offload_bound,
    offload_table,
    prepare,
    to_lake,
    watermark,
)
from ticklake.lake.offloader import Offloader
from ticklake.lake.tables import GOLD_OHLCV, SILVER_TRADES, TABLE_PROPERTIES, LakeTable, ensure_table
from ticklake.ops import metrics
from ticklake.settings import LakeSettings, Settings
from ticklake.warehouse.sql import query

pytestmark = pytest.mark.integration

# Longer than any call a healthy loopback store makes: an outage test then fails within seconds.
TEST_IO_TIMEOUT_S = 1.0


def new_namespace() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"  # tests share the session's store, each in its own namespace


def run(warehouse: Client, catalog: Catalog, namespace: str, spec: LakeTable = SILVER_TRADES) -> OffloadResult:
    return offload_table(warehouse, catalog, namespace, spec, safety_lag_s=LAG_S, max_rows_per_commit=1_000_000)


def cold(catalog: Catalog, namespace: str, spec: LakeTable = SILVER_TRADES) -> list[tuple[Any, ...]]:
    return rows(catalog.load_table((namespace, spec.name)).scan().to_arrow())


def warm_candles(warehouse: Client, spec: LakeTable, before: int) -> list[tuple[Any, ...]]:
    everything = warehouse.query_arrow(query("lake_gold_ohlcv"), parameters={
        "timeframe": spec.timeframe, "closed_from": 0, "closed_before": before, "changed_after": 2**32 - 1})
    return rows(to_lake(everything, spec))


def trade_keys(cold_rows: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {(r[0], r[1], r[3]) for r in cold_rows}  # (exchange, symbol, trade_id)


def within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; fail the test if it is still running after ``seconds`` (a hang),
    else return what it raised (None if nothing)."""
    outcome: list[BaseException | None] = [None]

    def target() -> None:
        try:
            call()
        except BaseException as error:
            outcome[0] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a dead store must fail the call, not hang it"
    return outcome[0]


def test_offload_over_rest_and_s3_copies_silver_and_gold_exactly_once(warehouse: Client, seaweed: Seaweed,
                                                                      tmp_path: Path) -> None:
    settings = seaweed.lake_settings(new_namespace())
    catalog = open_catalog(settings, tmp_path)
    write(warehouse, tape(1, 2000))
    settle(warehouse)

    silver = run(warehouse, catalog, settings.namespace)
    gold_spec = GOLD_OHLCV["1h"]
    gold = run(warehouse, catalog, settings.namespace, gold_spec)

    assert (silver.rows, silver.commits) == (2000, 1)
    assert cold(catalog, settings.namespace) == warm(warehouse)
    gold_table = catalog.load_table((settings.namespace, gold_spec.name))
    assert gold.commits == 1 and gold.rows > 0
    assert cold(catalog, settings.namespace, gold_spec) == warm_candles(warehouse, gold_spec, closed_before(gold_table))
    # The files are in the object store, under the table bucket the warehouse names.
    table = catalog.load_table((settings.namespace, SILVER_TRADES.name))
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files and all(path.startswith(f"s3://{TABLE_BUCKET}/{settings.namespace}/") for path in files)
    assert table.metadata_location.startswith(f"s3://{TABLE_BUCKET}/")
    # The catalog keeps what exactly-once and the layout rely on.
    assert {k: table.properties.get(k) for k in TABLE_PROPERTIES if k != "format-version"} == {
        k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version"}
    assert table.metadata.format_version == 2
    assert [f.name for f in table.spec().fields] == ["ts_day", "exchange"]
    assert len(table.sort_order().fields) == 3

    # A re-run finds nothing new and commits nothing, in either table; a second process agrees.
    snapshots = {spec.name: len(catalog.load_table((settings.namespace, spec.name)).snapshots())
                 for spec in (SILVER_TRADES, gold_spec)}
    again = open_catalog(settings, tmp_path)
    assert run(warehouse, again, settings.namespace).commits == 0
    assert run(warehouse, again, settings.namespace, gold_spec).commits == 0
    assert {spec.name: len(again.load_table((settings.namespace, spec.name)).snapshots())
            for spec in (SILVER_TRADES, gold_spec)} == snapshots
    assert ensure_table(again, settings.namespace, SILVER_TRADES).metadata.table_uuid == table.metadata.table_uuid


def prepared(warehouse: Client, catalog: Catalog, namespace: str) -> tuple[Table, Batch]:
    table = catalog.load_table((namespace, SILVER_TRADES.name))
    batch = prepare(warehouse, table, SILVER_TRADES, offload_bound(warehouse, LAG_S), 1_000_000)
    assert batch is not None
    return table, batch


def test_the_rest_catalog_refuses_a_stale_commit(warehouse: Client, seaweed: Seaweed, tmp_path: Path) -> None:
    settings = seaweed.lake_settings(new_namespace())
    catalog, other = open_catalog(settings, tmp_path), open_catalog(settings, tmp_path)  # two processes
    ensure_table(catalog, settings.namespace, SILVER_TRADES)
    write(warehouse, tape(1, 300))
    settle(warehouse)
    table_a, batch_a = prepared(warehouse, catalog, settings.namespace)
    table_b, batch_b = prepared(warehouse, other, settings.namespace)

    commit(table_a, batch_a)
    with pytest.raises(CommitFailedException):  # B's base snapshot is no longer the branch head
        commit(table_b, batch_b)

    assert run(warehouse, catalog, settings.namespace).rows == 0
    assert cold(catalog, settings.namespace) == warm(warehouse)


def test_of_offloaders_committing_at_the_same_instant_exactly_one_wins(warehouse: Client, seaweed: Seaweed,
                                                                       tmp_path: Path) -> None:
    settings = seaweed.lake_settings(new_namespace())
    ensure_table(open_catalog(settings, tmp_path), settings.namespace, SILVER_TRADES)
    write(warehouse, tape(1, 300))
    settle(warehouse)
    racers = 4
    # Each prepares on its own catalog connection from the same watermark, then all commit at once:
    # the catalog must check the base snapshot and swap the head atomically.
    contenders = [prepared(warehouse, open_catalog(settings, tmp_path), settings.namespace) for _ in range(racers)]
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def offloader(table: Table, batch: Batch) -> None:
        start.wait()
        try:
            commit(table, batch)
            outcomes.append("committed")
        except CommitFailedException:
            outcomes.append("refused")

    threads = [threading.Thread(target=offloader, args=contender) for contender in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["committed"] + ["refused"] * (racers - 1)
    catalog = open_catalog(settings, tmp_path)
    assert cold(catalog, settings.namespace) == warm(warehouse)
    assert len(catalog.load_table((settings.namespace, SILVER_TRADES.name)).snapshots()) == 1


def test_wrong_keys_are_refused_clearly(seaweed: Seaweed, tmp_path: Path) -> None:
    settings = seaweed.lake_settings().model_copy(update={"s3_secret_access_key": SecretStr("not-the-secret")})
    with pytest.raises(OAuthError, match="invalid_client"):
        open_catalog(settings, tmp_path)


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[Seaweed]:
    """A store of the test's own, which it may stop, freeze and restart."""
    server = Seaweed(tmp_path / "seaweed").start()
    try:
        yield server
    finally:
        server.remove()


def outage_settings(server: Seaweed) -> LakeSettings:
    return server.lake_settings(new_namespace()).model_copy(update={"io_timeout_s": TEST_IO_TIMEOUT_S})


def test_while_the_object_store_is_down_offload_fails_clearly_and_then_catches_up(
        warehouse: Client, own_seaweed: Seaweed, tmp_path: Path) -> None:
    settings = outage_settings(own_seaweed)
    catalog = open_catalog(settings, tmp_path)
    write(warehouse, tape(1, 500))
    settle(warehouse)
    assert run(warehouse, catalog, settings.namespace).rows == 500

    own_seaweed.stop()
    write(warehouse, tape(501, 700))  # the warm tier keeps taking rows meanwhile
    settle(warehouse)
    assert warehouse.query("SELECT count() FROM silver_trades").result_rows[0][0] == 1200
    error = within(60, lambda: run(warehouse, catalog, settings.namespace))
    assert isinstance(error, OSError), error  # connection refused, from the catalog or the store
    error = within(60, lambda: open_catalog(settings, tmp_path))
    assert isinstance(error, OSError), error

    own_seaweed.start()  # the same store: same data, same ports
    result = run(warehouse, catalog, settings.namespace)

    assert (result.rows, result.commits) == (700, 1)
    cold_rows = cold(catalog, settings.namespace)
    assert cold_rows == warm(warehouse)
    assert len(trade_keys(cold_rows)) == 1200  # each trade once


def test_a_hung_object_store_fails_the_offload_instead_of_blocking_it(
        warehouse: Client, own_seaweed: Seaweed, tmp_path: Path) -> None:
    settings = outage_settings(own_seaweed)
    catalog = open_catalog(settings, tmp_path)
    ensure_table(catalog, settings.namespace, SILVER_TRADES)
    write(warehouse, tape(1, 400))
    settle(warehouse)
    table, batch = prepared(warehouse, catalog, settings.namespace)

    own_seaweed.freeze()  # connections are accepted and never answered
    try:
        # Writing the data files (S3): pyarrow's timeouts, 3 tries.
        error = within(60, lambda: commit(table, batch))
        assert isinstance(error, OSError), error
        # Loading the table (REST): pyiceberg sets no timeout, catalog.py does.
        error = within(60, lambda: run(warehouse, catalog, settings.namespace))
        assert isinstance(error, OSError), error
    finally:
        own_seaweed.thaw()

    assert run(warehouse, catalog, settings.namespace).rows == 400
    assert cold(catalog, settings.namespace) == warm(warehouse)
    assert watermark(catalog.load_table((settings.namespace, SILVER_TRADES.name))) == batch.upper


async def test_the_scheduled_offloader_rides_out_an_outage_and_the_lag_shows(
        warehouse: Client, own_seaweed: Seaweed, tmp_path: Path) -> None:
    """The store down for a while under the real schedule: the warm tier keeps taking rows, the failures
    and the growing lag show in metrics and health, and once the store is back the offloader catches
    up on its own, each row once."""
    lake = outage_settings(own_seaweed).model_copy(
        update={"offload_interval_s": 1, "safety_lag_s": 2, "retry_initial_s": 0.2})
    offloader = Offloader(Settings(lake=lake), warehouse, partial(open_catalog, lake, tmp_path),
                          tables=["silver_trades", "bronze_trades"])
    silver = offloader.states["silver_trades"]
    task = asyncio.create_task(offloader.run_forever())

    async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"never: {what}"
            await asyncio.sleep(0.2)

    def lag() -> float:
        return float(metrics.LAKE_OFFLOAD_LAG.labels("silver_trades")._value.get())

    try:
        write(warehouse, tape(1, 300))
        await until(lambda: silver.rows == 300, "the first rows offloaded")
        failures_before = sum(counter.get() for counter in failure_counters())

        own_seaweed.stop()
        write(warehouse, tape(301, 400))  # the warm tier is unaffected
        assert warehouse.query("SELECT count() FROM silver_trades").result_rows[0][0] == 700
        await until(lambda: silver.failures >= 2, "failures while the store is down")
        lag_during = lag()
        await asyncio.sleep(3)
        assert lag() >= lag_during + 2  # the lag keeps growing while nothing can be offloaded
        assert sum(counter.get() for counter in failure_counters()) >= failures_before + 2
        assert offloader.health()["status"] == "degraded"
        assert "silver_trades" in offloader.health()["failing"]  # type: ignore[operator]

        back_at = time.time()
        own_seaweed.start()
        await until(lambda: silver.rows == 700 and not any(s.failures for s in offloader.states.values()),
                    "catching up after the outage")
        assert offloader.health()["status"] == "ok"
        # Caught up: the lag counts from the bound of a run made after the store came back (a safety
        # lag before its start, in whole seconds), however long that run took on a busy machine.
        assert time.time() - lag() >= back_at - lake.safety_lag_s - 1
        catalog = open_catalog(lake, tmp_path)
        cold_rows = cold(catalog, lake.namespace)
        assert cold_rows == warm(warehouse)
        assert len(trade_keys(cold_rows)) == 700
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        offloader.close()


def failure_counters() -> list[Any]:
    """Every failure counter of silver_trades, whatever the reason label."""
    return [metric._value for key, metric in metrics.LAKE_OFFLOAD_FAILURES._metrics.items()
            if key[0] == "silver_trades"]
