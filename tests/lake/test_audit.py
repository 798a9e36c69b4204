"""The audit finds the cold tier equal to the warm tier where both must hold rows, and names every
partition where they differ: a row missing on either side, a row stored twice, a value changed
(docs/lake.md, "Audit"). Real embedded ClickHouse filled through the writer, real offloads, SQLite
catalog in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, EqualTo
from pyiceberg.table import Table

from tests.factories import BASE_US, frame, trade
from ticklake.lake.audit import (
    KEY_COLUMNS,
    AuditResult,
    audit,
    exit_code,
    group_column,
    report,
    retention_s,
)
from ticklake.lake.catalog import open_catalog
from ticklake.lake.checksums import row_hashes
from ticklake.lake.offload import offload_bound, offload_table, watermark
from ticklake.lake.results import record
from ticklake.lake.tables import GOLD_OHLCV, SILVER_TRADES, TABLES, LakeTable
from ticklake.model import BusReject, Message, Trade
from ticklake.ops import metrics
from ticklake.settings import LakeSettings, RetentionSettings, Settings, ValidationSettings
from ticklake.warehouse import migrate
from ticklake.warehouse.writer import WarehouseWriter

pytestmark = pytest.mark.integration

LAG_S = 1  # as tests/lake/test_offload.py: no insert is in flight when these tests offload
NAMESPACE = "ticklake"
MINUTE_US, HOUR_US, DAY_US = 60_000_000, 3_600_000_000, 86_400_000_000
STORED_TABLES = ("raw_frames", "bronze_trades", "silver_trades", "dead_letters", "bus_dead_letters")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return open_catalog(LakeSettings(), tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def wh(warehouse: Client) -> Client:
    """The session warehouse with no audit results either."""
    warehouse.command("TRUNCATE TABLE IF EXISTS lake_audits")
    return warehouse


MARKETS = (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD"))


def tape(first_id: int, count: int, *, start_us: int = BASE_US) -> list[Trade]:
    """Trades on three markets of two venues, each on three days, five hours a day, seven minutes an hour."""
    return [trade(i, f"{100 + i % 7}.{i % 1000:03d}", f"0.{i % 9 + 1}25", exchange=MARKETS[i % 3][0],
                  symbol=MARKETS[i % 3][1], side=("buy", "sell")[i % 2],
                  ts_us=start_us + (i // 3 % 3) * DAY_US + (i % 5) * HOUR_US + (i % 7) * MINUTE_US + i * 1000)
            for i in range(first_id, first_id + count)]


def write(client: Client, trades: list[Trade], batch: int) -> None:
    """Trades with a raw frame per venue, two trades that fail validation (dead letters) and a message
    that is no ticklake record (bus dead letter). ``batch`` makes each call's frames and messages new."""
    writer = WarehouseWriter(client, ValidationSettings())
    rejected = [trade(10_000_000 + batch * 10 + n, "-1", exchange=exchange, symbol=symbol)
                for n, (exchange, symbol) in enumerate(MARKETS[1:])]
    frames = [frame("{}", exchange=exchange, conn_id=f"{exchange}-conn", frame_seq=batch,
                    received_us=BASE_US + batch * 1_000_000, trade_count=len(trades))
              for exchange in ("binance", "kraken")]
    writer.write(frames, [*trades, *rejected])
    rejects = [Message(topic=topic, key="BTC/USDT", value=BusReject("BTC/USDT", "{}", "\xff garbage", "undecodable",
                                                                    "not a ticklake record"),
                       partition=0, offset=batch)
               for topic in ("ticklake.trades.binance", "ticklake.trades.kraken")]
    writer.commit(writer.plan_messages(rejects))


def settle(client: Client) -> None:
    """Wait until every stored row and every candle change is older than the safety lag, by the
    warehouse's clock (the gold view's updated_at may fall a second after the trades' stored_at)."""
    newest = max(int(client.query(f"SELECT toUInt32(max({column})) FROM {name}").result_rows[0][0])
                 for name, column in [*((name, "stored_at") for name in STORED_TABLES), ("gold_ohlcv", "updated_at")])
    while offload_bound(client, LAG_S) < newest:
        time.sleep(0.2)


def offload(client: Client, catalog: Catalog, specs: list[LakeTable] | None = None) -> None:
    for spec in specs or list(TABLES.values()):
        offload_table(client, catalog, NAMESPACE, spec, safety_lag_s=LAG_S, max_rows_per_commit=1_000_000)


def cold_table(catalog: Catalog, spec: LakeTable = SILVER_TRADES) -> Table:
    return catalog.load_table((NAMESPACE, spec.name))


def by_table(results: list[AuditResult]) -> dict[str, AuditResult]:
    return {result.table: result for result in results}


def day(us: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(us // 1_000_000))


def only_mismatch(results: list[AuditResult], table: str) -> str:
    """The one partition in mismatch, after checking that it is the only one, in ``table``."""
    assert exit_code(results) == 1
    wrong = [(result.table, p.partition) for result in results for p in result.mismatches]
    assert len(wrong) == 1 and wrong[0][0] == table, wrong
    assert any(line.startswith(f"MISMATCH {table} {wrong[0][1]}: ") for line in report(results))
    return wrong[0][1]


# --- equal -----------------------------------------------------------------------------------------


def test_every_table_equals_warm_after_offloads_late_rows_and_reruns(wh: Client, catalog: Catalog,
                                                                     settings: Settings) -> None:
    now_us = int(time.time() * 1_000_000)
    live = [trade(20_000_000 + n, "101.5", "0.5", exchange=exchange, symbol=symbol, ts_us=now_us - 1_000_000)
            for n, (exchange, symbol) in enumerate(MARKETS)]  # their hour and day are still open
    write(wh, tape(1, 3000) + live, batch=1)
    settle(wh)
    offload(wh, catalog)

    first = by_table(audit(wh, catalog, settings))

    assert set(first) == set(TABLES)
    assert exit_code(list(first.values())) == 0, report(list(first.values()))
    for result in first.values():
        assert result.ok and result.partitions and result.warm_rows == result.cold_rows > 0, result.summary()
    # Trades: one partition a (day, exchange); candles: one a (month, exchange).
    days = {day(BASE_US + n * DAY_US) for n in range(3)} | {day(now_us)}
    assert {p.partition for p in first["silver_trades"].partitions} == {
        f"ts_day={d}/exchange={e}" for d in days for e in ("binance", "kraken")}
    assert {p.partition for p in first["gold_ohlcv_1m"].partitions} >= {
        "bucket_month=2026-01/exchange=binance", "bucket_month=2026-01/exchange=kraken"}
    assert {p.partition for p in first["bus_dead_letters"].partitions} == {
        f"stored_at_day={day(now_us)}/topic=ticklake.trades.{e}" for e in ("binance", "kraken")}
    assert first["silver_trades"].warm_rows == 3003
    # The live trades' day is open: its 1d candles are not in cold, and not compared.
    assert first["gold_ohlcv_1d"].closed_before <= now_us // 1_000_000
    assert first["gold_ohlcv_1d"].warm_rows == 9  # three markets x three days; today's candles are open
    assert all(r.pending_buckets == 0 for r in first.values())

    # Late rows: stored after the offload, in a window and a partition already offloaded (the first
    # minute of the first day) and in days cold has never seen (two days earlier).
    late = [trade(5001 + n, "99.5", "0.5", ts_us=BASE_US + n * 1000) for n in range(30)]
    late += tape(6001, 30, start_us=BASE_US - 2 * DAY_US)
    write(wh, late, batch=2)

    pending = by_table(audit(wh, catalog, settings))

    assert exit_code(list(pending.values())) == 0, report(list(pending.values()))
    assert pending["silver_trades"].warm_rows == 3003  # stored after the watermark: pending, not missing
    for label in GOLD_OHLCV:  # changed candles wait for their rewrite; the other buckets still compare
        candles = pending[f"gold_ohlcv_{label}"]
        assert candles.pending_buckets > 0 and candles.warm_rows == candles.cold_rows > 0, candles.summary()
        assert candles.warm_rows < first[f"gold_ohlcv_{label}"].warm_rows

    settle(wh)
    offload(wh, catalog)
    after = by_table(audit(wh, catalog, settings))
    again = by_table(audit(wh, catalog, settings))

    for results in (after, again):
        assert exit_code(list(results.values())) == 0, report(list(results.values()))
        assert results["silver_trades"].warm_rows == 3003 + 60
        assert all(r.pending_buckets == 0 for r in results.values()), [r.summary() for r in results.values()]
    assert {p.partition for p in after["silver_trades"].partitions} >= {
        f"ts_day={day(BASE_US - 2 * DAY_US)}/exchange=kraken"}
    assert [r.partitions for r in after.values()] == [r.partitions for r in again.values()]  # checksums too


def test_rows_stored_after_the_watermark_and_candles_changed_since_are_pending_not_mismatches(
        wh: Client, catalog: Catalog, settings: Settings) -> None:
    write(wh, tape(1, 300), batch=1)
    settle(wh)
    offload(wh, catalog, [SILVER_TRADES, GOLD_OHLCV["1h"]])
    silver_watermark = watermark(cold_table(catalog))
    write(wh, tape(1001, 50), batch=2)  # not offloaded: stored after the watermark

    results = by_table(audit(wh, catalog, settings, [SILVER_TRADES, GOLD_OHLCV["1h"]]))

    assert exit_code(list(results.values())) == 0, report(list(results.values()))
    assert results["silver_trades"].overlap_to == silver_watermark
    assert results["silver_trades"].warm_rows == 300
    assert results["gold_ohlcv_1h"].pending_buckets > 0


class WarehouseThreadOnly:
    """The warehouse client, refusing to be used from any thread but the warehouse's (as the embedded
    warehouse is used inside `ticklake up`)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.thread: threading.Thread | None = None
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        assert threading.current_thread() is self.thread, f"warehouse used from {threading.current_thread().name}"
        self.calls += 1
        return getattr(self.client, name)


def test_warm_work_can_run_on_the_warehouse_thread_and_the_rest_elsewhere(wh: Client, catalog: Catalog,
                                                                          settings: Settings) -> None:
    write(wh, tape(1, 300), batch=1)
    settle(wh)
    specs = [SILVER_TRADES, GOLD_OHLCV["1m"]]
    offload(wh, catalog, specs)
    guarded = WarehouseThreadOnly(wh)
    with ThreadPoolExecutor(1, thread_name_prefix="warehouse") as warehouse_thread:
        guarded.thread = warehouse_thread.submit(threading.current_thread).result()

        def on_warehouse(work: Callable[[], Any]) -> Any:
            return warehouse_thread.submit(work).result()

        results = audit(cast(Client, guarded), catalog, settings, specs, on_warehouse=on_warehouse)

    assert exit_code(results) == 0, report(results)
    assert guarded.calls > 0 and [r.partitions for r in results] == [
        r.partitions for r in audit(wh, catalog, settings, specs)]


def test_a_table_never_offloaded_has_nothing_to_compare(wh: Client, catalog: Catalog, settings: Settings) -> None:
    write(wh, tape(1, 30), batch=1)

    [result] = audit(wh, catalog, settings, [SILVER_TRADES])

    assert result.ok and result.partitions == () and result.note == "not offloaded yet"
    assert report([result]) == ["silver_trades: ok, nothing to compare (not offloaded yet)"]


def test_rows_the_warm_tier_may_have_expired_are_not_compared(wh: Client, catalog: Catalog,
                                                              settings: Settings) -> None:
    """Retention counts from stored_at: a row stored two days ago is past a one-day retention, so its
    absence from warm (as a TTL merge would leave it) is no mismatch; with 30 days it is one."""
    write(wh, tape(1, 30), batch=1)
    wh.command("INSERT INTO silver_trades (exchange, symbol, native_symbol, trade_id, price, qty, side, ts, "
               "received_at, conn_id, frame_seq, stored_at) VALUES ('kraken', 'BTC/USD', 'BTCUSD', 999, 100, 1, "
               "'buy', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'c', 1, now() - INTERVAL 2 DAY)")
    settle(wh)
    offload(wh, catalog, [SILVER_TRADES])
    wh.command("ALTER TABLE silver_trades DELETE WHERE trade_id = 999 SETTINGS mutations_sync = 2")

    one_day = settings.model_copy(update={"retention": RetentionSettings(silver_days=1)})
    [kept] = audit(wh, catalog, one_day, [SILVER_TRADES])
    [month] = audit(wh, catalog, settings, [SILVER_TRADES])

    assert kept.ok and kept.warm_rows == 30, report([kept])
    assert only_mismatch([month], "silver_trades") == "ts_day=2026-01-01/exchange=kraken"
    wrong = month.mismatches[0]
    assert wrong.warm_count == wrong.cold_count - 1


# --- different ---------------------------------------------------------------------------------------


@pytest.fixture
def offloaded(wh: Client, catalog: Catalog) -> list[Trade]:
    """Silver, bus dead letters and 1m candles offloaded and equal; the tape."""
    trades = tape(1, 600)
    write(wh, trades, batch=1)
    settle(wh)
    offload(wh, catalog, [SILVER_TRADES, TABLES["bus_dead_letters"], GOLD_OHLCV["1m"]])
    return trades


def one_trade(catalog: Catalog, trade_id: int) -> tuple[pa.Table, And]:
    where = And(EqualTo(term="exchange", value="kraken"), EqualTo(term="trade_id", value=trade_id))
    rows = cold_table(catalog).scan(row_filter=where).to_arrow()
    assert rows.num_rows == 1
    return rows, where


def kraken_partition(trades: list[Trade], trade_id: int) -> str:
    [found] = [t for t in trades if t.trade_id == trade_id]
    assert found.exchange == "kraken"
    return f"ts_day={day(found.ts_us)}/exchange=kraken"


def test_a_row_deleted_from_cold_is_a_mismatch_in_its_partition(wh: Client, catalog: Catalog, settings: Settings,
                                                                offloaded: list[Trade]) -> None:
    _, where = one_trade(catalog, 299)
    cold_table(catalog).delete(delete_filter=where)

    results = audit(wh, catalog, settings, [SILVER_TRADES])

    assert only_mismatch(results, "silver_trades") == kraken_partition(offloaded, 299)
    wrong = results[0].mismatches[0]
    assert wrong.cold_count == wrong.warm_count - 1 and wrong.cold_duplicate_keys == 0


def test_a_row_stored_twice_in_cold_is_a_duplicate_key(wh: Client, catalog: Catalog, settings: Settings,
                                                       offloaded: list[Trade]) -> None:
    copy, _ = one_trade(catalog, 299)
    cold_table(catalog).append(copy.cast(SILVER_TRADES.arrow_schema))

    results = audit(wh, catalog, settings, [SILVER_TRADES])

    assert only_mismatch(results, "silver_trades") == kraken_partition(offloaded, 299)
    wrong = results[0].mismatches[0]
    assert (wrong.cold_count, wrong.cold_duplicate_keys) == (wrong.warm_count + 1, 1)
    assert "1 duplicate keys in cold" in wrong.describe()


def test_a_value_changed_in_cold_is_a_checksum_mismatch(wh: Client, catalog: Catalog, settings: Settings,
                                                        offloaded: list[Trade]) -> None:
    """One row's price off by 10^-18: the counts agree, the content does not."""
    row, where = one_trade(catalog, 299)
    price = row.column("price")[0].as_py() + Decimal("1e-18")
    changed = row.set_column(row.schema.get_field_index("price"), "price", pa.array([price], pa.decimal128(38, 18)))
    cold_table(catalog).overwrite(changed.cast(SILVER_TRADES.arrow_schema), overwrite_filter=where)
    assert cold_table(catalog).scan().to_arrow().num_rows == 600  # the count is unchanged

    results = audit(wh, catalog, settings, [SILVER_TRADES])

    assert only_mismatch(results, "silver_trades") == kraken_partition(offloaded, 299)
    wrong = results[0].mismatches[0]
    assert wrong.warm_count == wrong.cold_count and wrong.warm_checksum != wrong.cold_checksum
    assert watermark(cold_table(catalog)) > 0  # the watermark property survived the edit


def test_a_row_missing_from_warm_is_a_mismatch(wh: Client, catalog: Catalog, settings: Settings,
                                               offloaded: list[Trade]) -> None:
    wh.command("ALTER TABLE silver_trades DELETE WHERE exchange = 'kraken' AND trade_id = 299 "
               "SETTINGS mutations_sync = 2")

    results = audit(wh, catalog, settings, [SILVER_TRADES])

    assert only_mismatch(results, "silver_trades") == kraken_partition(offloaded, 299)
    wrong = results[0].mismatches[0]
    assert wrong.warm_count == wrong.cold_count - 1


def test_a_candle_changed_in_cold_is_a_mismatch_in_its_month(wh: Client, catalog: Catalog, settings: Settings,
                                                             offloaded: list[Trade]) -> None:
    spec = GOLD_OHLCV["1m"]
    table = cold_table(catalog, spec)
    bucket = "2026-01-02T00:00:00+00:00"
    where = And(EqualTo(term="exchange", value="kraken"), EqualTo(term="bucket", value=bucket))
    candle = table.scan(row_filter=where).to_arrow()
    assert candle.num_rows == 1
    close = candle.set_column(candle.schema.get_field_index("close"), "close",
                              pa.array([candle.column("close")[0].as_py() + 1], pa.decimal128(38, 18)))
    table.overwrite(close.cast(spec.arrow_schema), overwrite_filter=where)

    results = audit(wh, catalog, settings, [spec])

    assert only_mismatch(results, spec.name) == "bucket_month=2026-01/exchange=kraken"


def test_candles_only_cold_still_holds_are_a_mismatch_in_their_month(wh: Client, catalog: Catalog,
                                                                    settings: Settings) -> None:
    """A month the warm tier lost entirely is found from the cold side."""
    write(wh, tape(1, 300) + tape(1001, 30, start_us=BASE_US - 3 * DAY_US), batch=1)  # 2025-12-29..31 too
    settle(wh)
    spec = GOLD_OHLCV["5m"]
    offload(wh, catalog, [spec])
    wh.command("ALTER TABLE gold_ohlcv DELETE WHERE bucket < '2026-01-01 00:00:00' SETTINGS mutations_sync = 2")

    [result] = audit(wh, catalog, settings, [spec])

    assert [(p.partition, p.warm_count, p.cold_count) for p in result.mismatches] == [
        ("bucket_month=2025-12/exchange=binance", 0, 20), ("bucket_month=2025-12/exchange=kraken", 0, 10)]
    assert all(p.ok for p in result.partitions if "2026-01" in p.partition)


def test_a_bus_dead_letter_missing_from_cold_is_a_mismatch_by_topic(wh: Client, catalog: Catalog,
                                                                    settings: Settings,
                                                                    offloaded: list[Trade]) -> None:
    spec = TABLES["bus_dead_letters"]
    cold_table(catalog, spec).delete(delete_filter=EqualTo(term="topic", value="ticklake.trades.kraken"))

    results = audit(wh, catalog, settings, [spec])

    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert only_mismatch(results, spec.name) == f"stored_at_day={today}/topic=ticklake.trades.kraken"


def test_mismatches_are_logged_counted_and_recorded(wh: Client, catalog: Catalog, settings: Settings,
                                                    offloaded: list[Trade], caplog: pytest.LogCaptureFixture) -> None:
    _, where = one_trade(catalog, 299)
    cold_table(catalog).delete(delete_filter=where)
    specs = [SILVER_TRADES, GOLD_OHLCV["1m"]]

    results = audit(wh, catalog, settings, specs)
    stored = record(wh, results)

    partition = kraken_partition(offloaded, 299)
    assert any(r.levelname == "ERROR" and "silver_trades" in r.getMessage() and partition in r.getMessage()
               for r in caplog.records)
    assert metrics.LAKE_AUDIT_MISMATCHED.labels("silver_trades")._value.get() == 1
    assert metrics.LAKE_AUDIT_MISMATCHED.labels("gold_ohlcv_1m")._value.get() == 0
    assert metrics.LAKE_AUDIT_ROWS.labels("silver_trades")._value.get() == 600
    assert metrics.LAKE_AUDIT_LAST_RUN.labels("silver_trades")._value.get() > time.time() - 60
    rows = wh.query("SELECT run_id, table, partition, toString(status), warm_count, cold_count, warm_checksum, "
                    "cold_checksum, detail FROM lake_audits ORDER BY table, partition").result_rows
    assert len(rows) == stored == sum(len(r.partitions) for r in results)
    assert {row[0] for row in rows} == {results[0].run_id}
    expected = [(r.table, p.partition, "ok" if p.ok else "mismatch", p.warm_count, p.cold_count, p.warm_checksum,
                 p.cold_checksum) for r in results for p in r.partitions]
    assert sorted(tuple(row[1:8]) for row in rows) == sorted(expected)
    [wrong] = [row for row in rows if row[3] == "mismatch"]
    assert wrong[1:3] == ("silver_trades", partition)
    assert wrong[8] == results[0].mismatches[0].describe()  # "warm N rows, cold N - 1 rows"


def test_a_table_that_cannot_be_read_is_an_error_not_a_pass(wh: Client, catalog: Catalog, settings: Settings,
                                                            offloaded: list[Trade]) -> None:
    table = cold_table(catalog)
    for task in table.scan().plan_files():  # the data files vanished (a wrong bucket policy, say)
        os.remove(task.file.file_path.removeprefix("file://"))

    results = audit(wh, catalog, settings, [SILVER_TRADES, GOLD_OHLCV["1m"]])

    assert exit_code(results) == 1
    assert results[0].error and not results[0].ok and results[1].ok
    assert report(results)[0].startswith("silver_trades: ERROR ")
    assert record(wh, results) == 1 + len(results[1].partitions)
    assert wh.query("SELECT toString(status) FROM lake_audits WHERE table = 'silver_trades'").result_rows == [
        ("error",)]


# --- the row hash ---------------------------------------------------------------------------------------


def silver_rows() -> pa.Table:
    ts = pa.array([BASE_US, BASE_US + 1], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.Table.from_pydict({
        "exchange": ["binance", "binance"], "symbol": ["BTC/USDT", "BTC/USDT"], "native_symbol": ["BTCUSDT"] * 2,
        "trade_id": [1, 2], "price": [Decimal("100.5"), Decimal("100.5")], "qty": [Decimal("0.25")] * 2,
        "side": ["buy", "sell"], "ts": ts, "received_at": ts, "conn_id": ["c", "c"], "frame_seq": [1, 1],
        "stored_at": ts,
    }).cast(SILVER_TRADES.arrow_schema)


def changed(rows: pa.Table, name: str) -> pa.Table:
    """``rows`` with the smallest change to the first row's ``name``."""
    column = rows.column(name)
    kind = column.type
    first = column[0].as_py()
    if pa.types.is_decimal(kind):
        value: object = first + Decimal("1e-18")
    elif pa.types.is_timestamp(kind):
        value = first + timedelta(microseconds=1)
    elif pa.types.is_integer(kind):
        value = first + 1
    else:
        value = first[:-1] + chr(ord(first[-1]) + 1)
    return rows.set_column(rows.schema.get_field_index(name), rows.schema.field(name),
                           pa.array([value, *column.to_pylist()[1:]], kind))


@pytest.mark.parametrize("name", SILVER_TRADES.arrow_schema.names)
def test_the_row_hash_changes_with_the_least_change_to_any_column(name: str) -> None:
    rows = silver_rows()
    before, after = row_hashes(rows)[0], row_hashes(changed(rows, name))[0]
    assert before[0] != after[0] and before[1] == after[1]


def test_the_row_hash_depends_on_values_not_on_their_arrow_layout() -> None:
    rows = silver_rows()
    large = rows.cast(pa.schema([pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type)
                                 for f in rows.schema]))
    chunked = pa.Table.from_batches([rows.slice(0, 1).to_batches()[0], rows.slice(1).to_batches()[0]])
    assert chunked.column(0).num_chunks == 2
    expected = row_hashes(rows, ("exchange", "trade_id"))
    for other in (large, chunked, pa.concat_tables([rows, rows]).combine_chunks().slice(2)):
        assert [h.tolist() for h in row_hashes(other, ("exchange", "trade_id"))] == [h.tolist() for h in expected]
    swapped = rows.set_column(2, "native_symbol", rows.column("symbol")).set_column(1, "symbol",
                                                                                  rows.column("native_symbol"))
    assert row_hashes(swapped)[0].tolist() != row_hashes(rows)[0].tolist()  # a column is hashed as itself


def test_every_cold_table_has_a_key_a_partitioning_and_a_retention() -> None:
    for spec in TABLES.values():
        if spec.timeframe is None:
            assert set(KEY_COLUMNS[spec.name]) <= set(spec.arrow_schema.names)
        assert group_column(spec) in spec.arrow_schema.names and spec.time_column in spec.arrow_schema.names
        assert retention_s(spec, RetentionSettings()) > 0
    assert retention_s(GOLD_OHLCV["1d"], RetentionSettings()) == 730 * 86_400


# --- migration and command line -------------------------------------------------------------------


def tables_in(client: Client) -> set[str]:
    return {row[0] for row in client.query("SHOW TABLES").result_rows}


def test_version_4_rolls_back_and_forward_keeping_the_layers(wh: Client, catalog: Catalog,
                                                             settings: Settings) -> None:
    write(wh, tape(1, 30), batch=1)
    newer = [m.version for m in reversed(migrate.available()) if m.version >= 4]
    assert "lake_audits" in tables_in(wh)

    assert migrate.downgrade(wh, 3) == newer
    assert "lake_audits" not in tables_in(wh)
    assert wh.command("SELECT count() FROM silver_trades") == 30
    assert migrate.upgrade(wh) == newer[::-1]
    settle(wh)
    offload(wh, catalog, [SILVER_TRADES])
    results = audit(wh, catalog, settings, [SILVER_TRADES])
    assert exit_code(results) == 0 and len(results[0].partitions) == 6  # three days x two venues
    assert record(wh, results) == 6


def ticklake(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ticklake.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)


FILL_AND_OFFLOAD = """
import time
from tests.lake.test_audit import offload, settle, tape, write
from ticklake.platform import open_warehouse
from ticklake.lake.catalog import open_catalog
from ticklake.settings import load_settings

settings = load_settings()
client = open_warehouse(settings)
write(client, tape(1, 600), batch=1)
settle(client)
offload(client, open_catalog(settings.lake, settings.data_dir))
client.close()
"""

RECORDED = """
from ticklake.platform import connect_warehouse
from ticklake.settings import load_settings

client = connect_warehouse(load_settings())
statuses = client.query("SELECT toString(status), count() FROM lake_audits GROUP BY status ORDER BY status")
for row in statuses.result_rows:
    print(*row)
client.close()
"""


def test_the_audit_command_exits_1_on_a_mismatch_and_prints_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    env.update({"TICKLAKE_DATA_DIR": str(tmp_path), "TZ": "UTC", "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"})
    filled = subprocess.run([sys.executable, "-c", FILL_AND_OFFLOAD], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert filled.returncode == 0, filled.stderr

    equal = ticklake("audit", env=env)
    assert equal.returncode == 0, equal.stdout + equal.stderr
    lines = equal.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(TABLES)  # one line a table
    assert all(": ok" in line for line in lines)

    table = open_catalog(LakeSettings(), tmp_path).load_table((NAMESPACE, "silver_trades"))
    table.delete(delete_filter=And(EqualTo(term="exchange", value="kraken"), EqualTo(term="trade_id", value=299)))
    broken = ticklake("audit", "--table", "silver_trades", "--table", "gold_ohlcv_1m", env=env)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    [mismatch] = [line for line in broken.stdout.splitlines() if line.startswith("MISMATCH")]
    partition = kraken_partition(tape(1, 600), 299)
    rows = sum(1 for t in tape(1, 600) if t.exchange == "kraken" and f"ts_day={day(t.ts_us)}/" in partition)
    assert mismatch.startswith(f"MISMATCH silver_trades {partition}: warm {rows} rows, cold {rows - 1} rows, "
                               "checksums differ")
    assert "gold_ohlcv_1m: ok" in broken.stdout

    unknown = ticklake("audit", "--table", "silver", env=env)
    assert unknown.returncode == 2 and "unknown cold tables ['silver']" in unknown.stderr

    recorded = subprocess.run([sys.executable, "-c", RECORDED], env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=120)
    assert recorded.returncode == 0, recorded.stderr
    counts = dict(line.split() for line in recorded.stdout.splitlines())
    assert int(counts["mismatch"]) == 1 and int(counts["ok"]) > len(TABLES)
