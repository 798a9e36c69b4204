"""Versioned migrations: applied once, refused when edited, rolled back and re-applied cleanly."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from tests.factories import trade
from ticklake.settings import RetentionSettings, ValidationSettings
from ticklake.warehouse import migrate
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import WarehouseWriter

LAYERS = {"raw_frames", "bronze_trades", "silver_trades", "dead_letters", "gold_ohlcv", "gold_ohlcv_mv"}


def tables(client: Client) -> set[str]:
    return {row[0] for row in client.query("SHOW TABLES").result_rows}


def test_upgrade_is_idempotent_and_recorded(warehouse: Client) -> None:
    assert migrate.upgrade(warehouse) == []
    applied = migrate.applied(warehouse)
    assert sorted(applied) == [m.version for m in migrate.available()]
    assert tables(warehouse) >= LAYERS


def test_rollback_then_upgrade_restores_a_working_schema(warehouse: Client) -> None:
    newest = migrate.available()[-1].version
    assert migrate.downgrade(warehouse, 0) == [m.version for m in reversed(migrate.available())]
    assert not (LAYERS & tables(warehouse))
    assert migrate.applied(warehouse) == {}
    assert migrate.upgrade(warehouse)[-1] == newest
    # the re-created chain works end to end: a trade reaches gold through the view
    WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650)).write([], [trade(1)])
    assert WarehouseReader(warehouse).ohlcv("binance", "BTC/USDT", "1d", None, None, 5)[0].trades == 1


def test_an_edited_migration_is_refused(warehouse: Client) -> None:
    first = migrate.available()[0]
    warehouse.command(migrate.query("record_migration"), parameters={
        "version": first.version, "name": first.name, "checksum": "edited", "direction": "up"})
    try:
        with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
            migrate.upgrade(warehouse)
    finally:
        warehouse.command(migrate.query("record_migration"), parameters={
            "version": first.version, "name": first.name, "checksum": first.checksum, "direction": "up"})
    assert migrate.upgrade(warehouse) == []


def test_an_interrupted_migration_completes_when_run_again(warehouse: Client) -> None:
    """DDL is not transactional: a half-applied version (ledger row missing) is finished, not broken."""
    first = migrate.available()[0]
    warehouse.command(migrate.query("record_migration"), parameters={
        "version": first.version, "name": first.name, "checksum": first.checksum, "direction": "down"})
    warehouse.command("DROP VIEW gold_ohlcv_mv")  # as if the process died before the last statement
    assert migrate.upgrade(warehouse) == [first.version]
    assert tables(warehouse) >= LAYERS


def test_retention_follows_settings(warehouse: Client) -> None:
    migrate.apply_retention(warehouse, RetentionSettings(raw_hours=5, gold_1d_days=999).model_dump())
    assert "toIntervalHour(_CAST(5," in warehouse.command("SHOW CREATE TABLE raw_frames")
    gold = warehouse.command("SHOW CREATE TABLE gold_ohlcv")
    assert "toIntervalDay(_CAST(999," in gold and "toIntervalDay(_CAST(365," in gold
    migrate.apply_retention(warehouse, RetentionSettings().model_dump())


def raw_columns(client: Client) -> set[str]:
    return {row[0] for row in client.query("DESCRIBE TABLE raw_frames").result_rows}


def test_version_2_rolls_back_and_forward_without_touching_version_1(warehouse: Client) -> None:
    assert {"source", "native_symbol"} <= raw_columns(warehouse)
    assert migrate.downgrade(warehouse, 1) == [7, 6, 5, 4, 3, 2]
    assert not {"source", "native_symbol"} & raw_columns(warehouse)
    assert sorted(migrate.applied(warehouse)) == [1]
    assert migrate.upgrade(warehouse) == [2, 3, 4, 5, 6, 7]
    assert {"source", "native_symbol"} <= raw_columns(warehouse)


BUS_COLUMNS = {"bus_topic", "bus_partition", "bus_offset"}


def test_version_3_rolls_back_keeping_the_trades_and_forward_again(warehouse: Client) -> None:
    """Bus positions go and come back; the rows written meanwhile stay, and the chain still works."""
    writer = WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650))
    writer.write([], [trade(1)])
    assert raw_columns(warehouse) >= BUS_COLUMNS and {"bus_positions", "bus_dead_letters"} <= tables(warehouse)
    assert migrate.downgrade(warehouse, 2) == [7, 6, 5, 4, 3]
    assert not BUS_COLUMNS & raw_columns(warehouse)
    assert not {"bus_positions", "bus_dead_letters"} & tables(warehouse)
    assert warehouse.command("SELECT count() FROM bronze_trades") == 1
    assert migrate.upgrade(warehouse) == [3, 4, 5, 6, 7]
    writer.forget_state()
    writer.write([], [trade(2)])
    assert WarehouseReader(warehouse).ohlcv("binance", "BTC/USDT", "1d", None, None, 5)[0].trades == 2


def part_storage(client: Client) -> dict[str, set[str]]:
    rows = client.query("SELECT table, part_storage_type FROM system.parts "
                        "WHERE database = currentDatabase() AND active").result_rows
    storage: dict[str, set[str]] = {}
    for table, kind in rows:
        storage.setdefault(table, set()).add(kind)
    return storage


def test_version_5_packs_small_parts_and_rolls_back_keeping_them_readable(warehouse: Client) -> None:
    """An insert's parts are one packed file each (cheap small inserts); rolled back, new parts are
    written the default way again, and the packed ones still read, with the candles intact."""
    writer = WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650))
    writer.write([], [trade(1)])
    packed = part_storage(warehouse)
    assert packed["bronze_trades"] == packed["silver_trades"] == packed["gold_ohlcv"] == {"Packed"}
    assert migrate.downgrade(warehouse, 4) == [7, 6, 5]
    writer = WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650))
    writer.write([], [trade(2)])
    assert part_storage(warehouse)["silver_trades"] == {"Packed", "Full"}
    assert WarehouseReader(warehouse).ohlcv("binance", "BTC/USDT", "1d", None, None, 5)[0].trades == 2
    assert migrate.upgrade(warehouse) == [5, 6, 7]
    writer.write([], [trade(3)])
    assert WarehouseReader(warehouse).ohlcv("binance", "BTC/USDT", "1d", None, None, 5)[0].trades == 3


def test_version_6_orders_silver_by_commit_and_rolls_back_keeping_the_trades(warehouse: Client) -> None:
    """Each batch's silver rows carry its place in commit order, increasing; rows stored before the
    version read 0; rolled back, the column goes and the trades stay."""
    assert migrate.downgrade(warehouse, 5) == [7, 6]
    WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650)).write([], [trade(1)])
    assert migrate.upgrade(warehouse) == [6, 7]
    writer = WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650))
    writer.write([], [trade(3), trade(2)])
    writer.write([], [trade(4)])
    rows = warehouse.query("SELECT trade_id, committed_us FROM silver_trades ORDER BY trade_id").result_rows
    assert rows[0] == (1, 0)
    assert rows[1][1] == rows[2][1] > 0 and rows[3][1] > rows[1][1]
    assert migrate.downgrade(warehouse, 5) == [7, 6]
    assert warehouse.query("SELECT count() FROM silver_trades").result_rows[0][0] == 4
    assert migrate.upgrade(warehouse) == [6, 7]
