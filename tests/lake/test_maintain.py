"""Maintenance keeps the cold tier fast to plan without ever losing, duplicating or breaking a row:
compaction, snapshot expiry and orphan removal (docs/lake.md, "Maintenance"). Real embedded
ClickHouse filled through the writer, real offload commits, SQLite catalog and files in tmp_path."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tests.factories import BASE_US, frame, trade
from ticklake.cli import main
from ticklake.lake import maintain as maintain_module
from ticklake.lake.arrow_cast import to_lake
from ticklake.lake.catalog import open_catalog
from ticklake.lake.maintain import (
    Rewrite,
    commit_rewrite,
    compact,
    expire_snapshots,
    live_files,
    maintain,
    plan_compaction,
    remove_orphans,
    rewrite,
)
from ticklake.lake.offload import Batch, commit, offload_bound, offload_table, prepare
from ticklake.lake.tables import BRONZE_TRADES, SILVER_TRADES, TABLES, LakeTable, ensure_table
from ticklake.model import Trade
from ticklake.ops import metrics
from ticklake.settings import LakeSettings, ValidationSettings
from ticklake.warehouse.sql import query
from ticklake.warehouse.writer import WarehouseWriter

pytestmark = pytest.mark.integration

LAG_S = 1  # as tests/lake/test_offload.py: no insert is in flight when these tests offload
NAMESPACE = "ticklake"
DAY_US = 86_400_000_000
TARGET_BYTES = LakeSettings().compaction_target_file_mb * 1024 * 1024  # every test file is far smaller
A_WEEK_LATER = 8 * 86_400  # seconds to add to the clock: past snapshot retention and orphan age
PARTITIONS = 4  # tape(): two days x two exchanges


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    yield open_catalog(LakeSettings(), tmp_path)


def tape(first_id: int, count: int) -> list[Trade]:
    """Trades on three markets of two venues over two days: four (day, exchange) partitions."""
    markets = (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD"))
    return [trade(i, f"{100 + i % 7}.{i % 1000:03d}", "0.125", exchange=markets[i % 3][0], symbol=markets[i % 3][1],
                  side=("buy", "sell")[i % 2], ts_us=BASE_US + (i % 2) * DAY_US + i * 1000)
            for i in range(first_id, first_id + count)]


def write(warehouse: Client, trades: list[Trade]) -> None:
    WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", trade_count=len(trades))], trades)


def settle(warehouse: Client) -> None:
    """Wait until every stored row is older than the safety lag, by the warehouse's clock."""
    newest = int(warehouse.query("SELECT toUInt32(max(stored_at)) FROM silver_trades").result_rows[0][0])
    while offload_bound(warehouse, LAG_S) < newest:
        time.sleep(0.2)


def offload_in_commits(warehouse: Client, catalog: Catalog, spec: LakeTable = SILVER_TRADES,
                       commits: int = 20) -> None:
    """What ``commits`` offload runs leave behind, without waiting a second per run: the pending warm
    rows committed by the offloader's own commit() in ``commits`` slices, each touching every partition
    (one small file per partition and commit)."""
    table = ensure_table(catalog, NAMESPACE, spec)
    batch = prepare(warehouse, table, spec, offload_bound(warehouse, LAG_S), 10**9)
    assert batch is not None
    deal = random.Random(7)  # rows dealt at random: every commit gets some of every partition
    slices: list[list[int]] = [[] for _ in range(commits)]
    for row in range(batch.rows.num_rows):
        slices[deal.randrange(commits)].append(row)
    for indices in slices:
        commit(table, Batch(lower=batch.lower, upper=batch.upper, rows=batch.rows.take(indices)))


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def warm(warehouse: Client, spec: LakeTable = SILVER_TRADES) -> list[tuple[Any, ...]]:
    everything = warehouse.query_arrow(query(spec.select_query), parameters={"lower": 0, "upper": 2**32 - 1})
    return rows(to_lake(everything, spec))


def load(catalog: Catalog, spec: LakeTable = SILVER_TRADES) -> Table:
    return catalog.load_table((NAMESPACE, spec.name))


def cold(catalog: Catalog, spec: LakeTable = SILVER_TRADES) -> list[tuple[Any, ...]]:
    return rows(load(catalog, spec).scan().to_arrow())


def data_files(table: Table) -> list[str]:
    return [task.file.file_path for task in table.scan().plan_files()]


def local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def on_disk(table: Table) -> set[str]:
    """Every file under the table's folder, as file:// URIs spelled like the metadata's (not escaped)."""
    return {f"file://{path}" for path in local(table.location()).rglob("*") if path.is_file()}


def ready(warehouse: Client, catalog: Catalog, spec: LakeTable = SILVER_TRADES, trades: int = 3000,
          commits: int = 20) -> None:
    write(warehouse, tape(1, trades))
    settle(warehouse)
    offload_in_commits(warehouse, catalog, spec, commits)


# --- compaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [SILVER_TRADES, BRONZE_TRADES], ids=lambda s: s.name)
def test_compaction_merges_each_partitions_files_into_one_sorted_file_keeping_every_row(
        warehouse: Client, catalog: Catalog, spec: LakeTable) -> None:
    ready(warehouse, catalog, spec)
    table = load(catalog, spec)
    properties = dict(table.properties)
    snapshots = len(table.snapshots())
    assert len(data_files(table)) == 20 * PARTITIONS

    result = compact(table, spec, TARGET_BYTES)

    table = load(catalog, spec)
    assert (result.files_before, result.files_rewritten, result.files_after, result.rows_rewritten) == (
        20 * PARTITIONS, 20 * PARTITIONS, PARTITIONS, 3000)
    assert not result.skipped
    assert cold(catalog, spec) == warm(warehouse, spec)  # exactly the warm rows: none lost, none twice
    assert table.properties == properties  # the offload watermark untouched
    assert len(table.snapshots()) == snapshots + 1  # one commit for the whole table
    current = table.current_snapshot()
    assert current is not None and current.summary is not None
    assert current.summary.operation.value == "overwrite"
    assert current.summary["ticklake.maintenance"] == "compaction"
    files = [task.file for task in table.scan().plan_files()]
    assert len({f.partition for f in files}) == PARTITIONS  # one file a partition
    for data_file in files:
        content = pq.read_table(local(data_file.file_path))
        keys = list(zip(*(content[key].to_pylist() for key in spec.sort_keys), strict=True))
        assert keys == sorted(keys)  # sorted by the table's sort keys, as the offloader writes


def test_compaction_has_nothing_to_do_on_compacted_or_large_files(warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog, commits=3)
    table = load(catalog)
    smallest = min(task.file.file_size_in_bytes for task in table.scan().plan_files())

    large = compact(table, SILVER_TRADES, target_bytes=smallest)  # no file is smaller than the target

    assert (large.files_rewritten, large.files_after) == (0, 3 * PARTITIONS)
    assert len(load(catalog).snapshots()) == 3  # nothing committed
    compact(load(catalog), SILVER_TRADES, TARGET_BYTES)
    snapshots = len(load(catalog).snapshots())
    again = compact(load(catalog), SILVER_TRADES, TARGET_BYTES)
    assert (again.files_rewritten, again.files_after) == (0, PARTITIONS)
    assert len(load(catalog).snapshots()) == snapshots


def test_compaction_writes_row_groups_of_the_tables_limit(warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog, commits=4)
    with load(catalog).transaction() as tx:
        tx.set_properties({"write.parquet.row-group-limit": "100"})
    table = load(catalog)

    compact(table, SILVER_TRADES, TARGET_BYTES)

    for data_file in [task.file for task in load(catalog).scan().plan_files()]:
        metadata = pq.ParquetFile(local(data_file.file_path)).metadata
        assert metadata.num_row_groups == -(-data_file.record_count // 100)  # small groups: queries skip more
    assert load(catalog).properties == table.properties
    assert cold(catalog) == warm(warehouse)


def test_files_are_grouped_up_to_the_target_size_within_a_partition(warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog)
    table = load(catalog)
    sizes = sorted(task.file.file_size_in_bytes for task in table.scan().plan_files())
    target = sizes[-1] * 5  # about five files a group

    plan = plan_compaction(table, target)
    result = compact(table, SILVER_TRADES, target)

    assert plan.data_files == 20 * PARTITIONS
    for group in plan.groups:
        assert len(group) > 1
        assert sum(task.file.file_size_in_bytes for task in group) <= target
        assert len({(task.file.spec_id, task.file.partition) for task in group}) == 1  # one partition
    assert len(plan.groups) >= 4 * PARTITIONS
    assert result.files_after == result.files_before - result.files_rewritten + len(plan.groups)
    assert cold(catalog) == warm(warehouse)


def test_a_compaction_commit_requires_the_snapshot_it_read(warehouse: Client, catalog: Catalog,
                                                           tmp_path: Path) -> None:
    ready(warehouse, catalog, commits=5)
    table = load(catalog)
    done: Rewrite = rewrite(table, SILVER_TRADES, plan_compaction(table, TARGET_BYTES).groups)
    write(warehouse, tape(10_001, 300))  # new trades, offloaded by another process meanwhile
    settle(warehouse)
    assert offload_table(warehouse, open_catalog(LakeSettings(), tmp_path), NAMESPACE, SILVER_TRADES,
                         safety_lag_s=LAG_S, max_rows_per_commit=10**6).rows == 300

    with pytest.raises(CommitFailedException):
        commit_rewrite(table, done)

    assert cold(catalog) == warm(warehouse)


def test_an_offload_committing_during_compaction_skips_it_and_loses_or_duplicates_nothing(
        warehouse: Client, catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ready(warehouse, catalog, commits=10)
    write(warehouse, tape(10_001, 300))  # stored after the offloads above: the next offload takes them
    settle(warehouse)
    offloader = open_catalog(LakeSettings(), tmp_path)  # another process: its own catalog connection
    commit_for_real = maintain_module.commit_rewrite

    def offload_then_commit(table: Table, done: Rewrite) -> None:
        # The compaction has read its files and written their replacements; the offloader commits first.
        result = offload_table(warehouse, offloader, NAMESPACE, SILVER_TRADES, safety_lag_s=LAG_S,
                               max_rows_per_commit=10**6)
        assert result.rows == 300
        commit_for_real(table, done)

    monkeypatch.setattr(maintain_module, "commit_rewrite", offload_then_commit)
    result = compact(load(catalog), SILVER_TRADES, TARGET_BYTES)
    monkeypatch.undo()

    assert result.skipped and result.files_rewritten == 0
    assert cold(catalog) == warm(warehouse)  # 3,300 rows, each once
    table = load(catalog)
    assert {f for f in on_disk(table) if "/data/" in f} == set(data_files(table))  # its files were deleted again

    retried = compact(table, SILVER_TRADES, TARGET_BYTES)  # the next run
    assert not retried.skipped and retried.files_after == PARTITIONS
    assert cold(catalog) == warm(warehouse)


# --- snapshot expiry -----------------------------------------------------------------------------


def test_expiry_keeps_recent_snapshots_and_at_least_the_newest_few(warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog, commits=12)
    newest_first = [s.snapshot_id for s in sorted(load(catalog).snapshots(), key=lambda s: s.sequence_number or 0,
                                                  reverse=True)]

    assert expire_snapshots(load(catalog), retention_days=7, min_snapshots=5) == 0  # all younger than 7 days
    assert len(load(catalog).snapshots()) == 12

    expired = expire_snapshots(load(catalog), retention_days=7, min_snapshots=5, now=time.time() + A_WEEK_LATER)

    table = load(catalog)
    assert expired == 7
    assert [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.sequence_number or 0, reverse=True)] == \
        newest_first[:5]
    current = table.current_snapshot()
    assert current is not None and current.snapshot_id == newest_first[0]
    assert cold(catalog) == warm(warehouse)
    with pytest.raises(ValueError, match="at least 1"):
        expire_snapshots(table, retention_days=7, min_snapshots=0)


# --- orphan files --------------------------------------------------------------------------------


def test_orphan_removal_deletes_old_unreferenced_files_only(warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog, commits=5)
    table = load(catalog)
    live = on_disk(table)
    assert live <= live_files(table)  # nothing stray yet
    long_ago = time.time() - 100 * 3600
    for uri in live:  # live files as old as the orphans: only being referenced protects them
        os.utime(local(uri), (long_ago, long_ago))
    partition = local(data_files(table)[0]).parent
    crashed = partition / "00000-0-crashed-offload.parquet"  # a crash between writing and committing
    crashed.write_bytes(b"PAR1")
    os.utime(crashed, (long_ago, long_ago))
    stale_metadata = local(table.metadata_location).parent / "00099-crashed.metadata.json"
    stale_metadata.write_text("{}")
    os.utime(stale_metadata, (long_ago, long_ago))
    in_flight = partition / "00000-0-in-flight.parquet"  # written a moment ago: its commit may be coming
    in_flight.write_bytes(b"PAR1")

    removed = remove_orphans(table, min_age_hours=72)

    assert removed == 2
    assert not crashed.exists() and not stale_metadata.exists()
    assert in_flight.exists()
    assert on_disk(table) == live | {f"file://{in_flight}"}  # every live file still there
    assert cold(catalog) == warm(warehouse)
    with pytest.raises(ValueError, match="at least 1"):
        remove_orphans(table, min_age_hours=0.5)


def test_after_full_maintenance_every_row_is_readable_and_expired_files_are_gone(
        warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog)
    first = load(catalog)
    small_files = set(data_files(first))
    old_manifest_lists = {s.manifest_list for s in first.snapshots()}
    stored_before = on_disk(first)
    orphans_metric = metrics.REGISTRY.get_sample_value("ticklake_lake_orphans_removed_total",
                                                       {"table": "silver_trades"}) or 0.0

    # A week later, keeping only the newest snapshot: the offload snapshots expire, and with them the
    # small files compaction replaced.
    [result] = maintain(catalog, LakeSettings(namespace=NAMESPACE, min_snapshots=1), ["silver_trades"],
                        now=time.time() + A_WEEK_LATER)

    assert result.ok and not result.compaction_skipped
    assert (result.files_before, result.files_after, result.files_rewritten) == (80, PARTITIONS, 80)
    assert result.snapshots_expired == 20
    table = load(catalog)
    assert len(table.snapshots()) == 1
    assert cold(catalog) == warm(warehouse)  # a scan of the whole table
    stored = on_disk(table)
    assert not stored & small_files
    assert not stored & old_manifest_lists
    assert stored <= live_files(table)  # nothing unreferenced left behind
    assert {f for f in stored if "/data/" in f} == set(data_files(table))
    # The small files, and each offload's manifest list and manifest.
    assert result.orphans_removed == len(stored_before - stored) == 80 + 20 + 20
    assert metrics.REGISTRY.get_sample_value("ticklake_lake_orphans_removed_total",
                                             {"table": "silver_trades"}) == orphans_metric + result.orphans_removed
    assert table.properties == first.properties


def test_each_table_is_maintained_on_its_own(warehouse: Client, catalog: Catalog) -> None:
    ready(warehouse, catalog, commits=3)
    offload_in_commits(warehouse, catalog, BRONZE_TRADES, commits=3)
    broken = load(catalog, BRONZE_TRADES)
    current = broken.current_snapshot()
    assert current is not None
    local(current.manifest_list).unlink()  # bronze cannot be planned any more
    failures = metrics.REGISTRY.get_sample_value("ticklake_lake_maintenance_runs_total",
                                                 {"table": "bronze_trades", "result": "failed"}) or 0.0

    results = {r.table: r for r in maintain(catalog, LakeSettings(),
                                            ["bronze_trades", "silver_trades", "dead_letters"])}

    assert results["bronze_trades"].error is not None and not results["bronze_trades"].ok
    assert results["silver_trades"].ok and results["silver_trades"].files_after == PARTITIONS
    assert results["dead_letters"].ok and results["dead_letters"].missing  # never offloaded: nothing to do
    assert cold(catalog) == warm(warehouse)
    assert metrics.REGISTRY.get_sample_value("ticklake_lake_maintenance_runs_total",
                                             {"table": "bronze_trades", "result": "failed"}) == failures + 1
    with pytest.raises(ValueError, match="unknown cold tables: nope"):
        maintain(catalog, LakeSettings(), ["nope"])


# --- the command ---------------------------------------------------------------------------------


def test_the_maintain_command_maintains_a_data_dirs_cold_tier(
        warehouse: Client, catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("TICKLAKE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TICKLAKE_DATA_DIR", str(tmp_path))  # the catalog fixture's data dir
    # --no-audit: the audit opens the warehouse, and this process holds the session's (chdb: one path
    # per process); tests/lake/test_offloader.py runs `ticklake maintain` with its audit as a process.
    ready(warehouse, catalog, commits=5)

    assert main(["maintain", "--no-audit", "--table", "silver_trades"]) == 0
    assert capsys.readouterr().out.startswith(
        "silver_trades: 20 -> 4 data files (20 rewritten), 0 snapshots expired, 0 orphan files removed (")
    assert len(data_files(load(catalog))) == PARTITIONS

    assert main(["maintain", "--no-audit"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(TABLES)
    assert "bronze_trades: no table yet" in lines[1]

    assert main(["maintain", "--no-audit", "--table", "nope"]) == 2
    assert "unknown cold tables ['nope']" in capsys.readouterr().err

    offload_in_commits(warehouse, catalog, BRONZE_TRADES, commits=2)
    current = load(catalog, BRONZE_TRADES).current_snapshot()
    assert current is not None
    local(current.manifest_list).unlink()
    assert main(["maintain", "--no-audit"]) == 1  # one table failed: the others were still maintained
    assert "bronze_trades: FAILED" in capsys.readouterr().out
