"""The cold tier holds exactly what the warm tier stored: once, whatever re-runs, late rows, crashes
or racing offloaders happen (docs/lake.md). Real embedded ClickHouse, SQLite catalog in tmp_path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tests.support.lake import DAY_US, LAG_S, NAMESPACE, rows, settle, tape, warm, write
from ticklake.lake import offload as offload_module
from ticklake.lake.catalog import open_catalog
from ticklake.lake.offload import OffloadResult, commit, offload_bound, offload_table, prepare, watermark
from ticklake.lake.tables import RAW_FRAMES, SILVER_TRADES, TABLES, LakeTable, ensure_table
from ticklake.settings import LakeSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    yield open_catalog(LakeSettings(), tmp_path)


def run(warehouse: Client, catalog: Catalog, spec: LakeTable = SILVER_TRADES,
        max_rows: int = 1_000_000) -> OffloadResult:
    return offload_table(warehouse, catalog, NAMESPACE, spec, safety_lag_s=LAG_S, max_rows_per_commit=max_rows)


def cold(catalog: Catalog, spec: LakeTable = SILVER_TRADES) -> list[tuple[Any, ...]]:
    return rows(catalog.load_table((NAMESPACE, spec.name)).scan().to_arrow())


def test_offload_copies_silver_exactly_partitioned_sorted_and_zstd(warehouse: Client, catalog: Catalog) -> None:
    write(warehouse, tape(1, 3000))
    settle(warehouse)

    result = run(warehouse, catalog)

    assert result.rows == 3000 and result.commits == 1
    assert cold(catalog) == warm(warehouse)
    table = catalog.load_table((NAMESPACE, "silver_trades"))
    files = [task.file for task in table.scan().plan_files()]
    # One partition a (day, exchange) the trades fall in, each file inside one.
    expected = {(t.ts_us // DAY_US, t.exchange) for t in tape(1, 3000)}
    assert {(f.partition[0], f.partition[1]) for f in files} == expected
    for data_file in files:
        path = data_file.file_path.removeprefix("file://")
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        content = pq.read_table(path)
        keys = list(zip(content["symbol"].to_pylist(), content["ts"].to_pylist(), content["trade_id"].to_pylist(),
                        strict=True))
        assert keys == sorted(keys)  # sorted within each file


def test_a_rerun_offloads_nothing_and_commits_nothing(warehouse: Client, catalog: Catalog) -> None:
    write(warehouse, tape(1, 500))
    settle(warehouse)
    first = run(warehouse, catalog)
    snapshots = len(catalog.load_table((NAMESPACE, "silver_trades")).snapshots())

    again = run(warehouse, catalog)

    assert (first.rows, again.rows, again.commits) == (500, 0, 0)
    assert again.watermark == first.watermark
    assert len(catalog.load_table((NAMESPACE, "silver_trades")).snapshots()) == snapshots
    assert cold(catalog) == warm(warehouse)


def test_rows_inside_the_safety_lag_wait_for_the_next_run(warehouse: Client, catalog: Catalog) -> None:
    write(warehouse, tape(1, 100))

    # Stored within the lag (an hour here): they wait, whatever second it is now.
    waiting = offload_table(warehouse, catalog, NAMESPACE, SILVER_TRADES, safety_lag_s=3600, max_rows_per_commit=10)
    assert (waiting.rows, waiting.commits) == (0, 0)
    settle(warehouse)
    assert run(warehouse, catalog).rows == 100


def test_late_rows_reach_cold_at_the_next_run_without_duplicates(warehouse: Client, catalog: Catalog) -> None:
    write(warehouse, tape(1, 1000))
    settle(warehouse)
    run(warehouse, catalog)

    # Stored after the offload, though their exchange time is two days earlier than anything seen:
    # a backfill, a slow venue, a repair. stored_at is when they were stored, so they are new to the lake.
    write(warehouse, tape(1001, 200, ts_offset_us=-2 * DAY_US))
    settle(warehouse)
    result = run(warehouse, catalog)

    assert result.rows == 200
    cold_rows = cold(catalog)
    assert cold_rows == warm(warehouse)
    assert len({(r[0], r[1], r[3]) for r in cold_rows}) == 1200  # (exchange, symbol, trade_id) once each


def test_a_crash_after_the_commit_is_harmless(warehouse: Client, catalog: Catalog,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write(warehouse, tape(1, 400))
    settle(warehouse)

    def commit_then_die(table: Table, batch: offload_module.Batch) -> None:
        commit(table, batch)
        raise SystemExit("killed right after the Iceberg commit")

    monkeypatch.setattr(offload_module, "commit", commit_then_die)
    with pytest.raises(SystemExit):
        run(warehouse, catalog)
    monkeypatch.undo()

    assert run(warehouse, catalog).rows == 0  # the property is the only state: it moved with the data
    assert cold(catalog) == warm(warehouse)


def test_a_crash_before_the_commit_loses_nothing(warehouse: Client, catalog: Catalog,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write(warehouse, tape(1, 400))
    settle(warehouse)

    def die(self: Table, *args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed after writing data files, before the catalog commit")

    monkeypatch.setattr(Table, "_do_commit", die)
    with pytest.raises(SystemExit):
        run(warehouse, catalog)
    monkeypatch.undo()
    assert cold(catalog) == []
    assert watermark(catalog.load_table((NAMESPACE, "silver_trades"))) == 0

    assert run(warehouse, catalog).rows == 400
    assert cold(catalog) == warm(warehouse)


def test_of_two_racing_offloaders_exactly_one_commits(warehouse: Client, catalog: Catalog, tmp_path: Path) -> None:
    ensure_table(catalog, NAMESPACE, SILVER_TRADES)
    write(warehouse, tape(1, 300))
    settle(warehouse)
    other = open_catalog(LakeSettings(), tmp_path)  # a second process: its own catalog connection
    table_a = catalog.load_table((NAMESPACE, "silver_trades"))
    table_b = other.load_table((NAMESPACE, "silver_trades"))
    bound = offload_bound(warehouse, LAG_S)
    batch_a = prepare(warehouse, table_a, SILVER_TRADES, bound, 1_000_000)
    batch_b = prepare(warehouse, table_b, SILVER_TRADES, bound, 1_000_000)
    assert batch_a is not None and batch_b is not None

    commit(table_a, batch_a)
    with pytest.raises(CommitFailedException):
        commit(table_b, batch_b)

    assert run(warehouse, catalog).rows == 0
    assert cold(catalog) == warm(warehouse)


def test_a_backlog_is_offloaded_in_several_commits_cut_at_whole_seconds(warehouse: Client, catalog: Catalog) -> None:
    for n in range(3):  # three inserts in three different seconds
        write(warehouse, tape(1 + n * 100, 100))
        time.sleep(1.05)
    settle(warehouse)

    result = run(warehouse, catalog, max_rows=150)

    assert (result.rows, result.commits) == (300, 3)  # 100 + 100 > 150: one second a commit
    assert cold(catalog) == warm(warehouse)


@pytest.mark.parametrize("spec", [TABLES["bronze_trades"], RAW_FRAMES], ids=lambda s: s.name)
def test_bronze_and_raw_offload_independently(warehouse: Client, catalog: Catalog, spec: LakeTable) -> None:
    write(warehouse, tape(1, 300))
    settle(warehouse)

    assert run(warehouse, catalog, spec).rows == warehouse.query(f"SELECT count() FROM {spec.name}").first_row[0]
    assert cold(catalog, spec) == warm(warehouse, spec)
    assert not catalog.table_exists((NAMESPACE, "silver_trades"))  # nothing else was touched


def test_commit_refuses_a_table_that_retries_commits(warehouse: Client, catalog: Catalog) -> None:
    table = ensure_table(catalog, NAMESPACE, SILVER_TRADES)
    with table.transaction() as tx:
        tx.set_properties({"commit.retry.num-retries": "4"})
    write(warehouse, tape(1, 10))
    settle(warehouse)
    batch = prepare(warehouse, table, SILVER_TRADES, offload_bound(warehouse, LAG_S), 1_000_000)
    assert batch is not None
    with pytest.raises(RuntimeError, match="num-retries=0"):
        commit(table, batch)

    # ensure_table (called by every run) puts the property back first.
    assert run(warehouse, catalog).rows == 10
