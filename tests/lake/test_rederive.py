"""`ticklake rederive` rebuilds a warm layer from the one below and leaves the cold tier equal to the warm
one once the offloader has run: after a data loss, after a validation rule changed, after a crash half
way, with an offloader racing it (docs/lake.md, "Re-derivation"). Real embedded ClickHouse, SQLite
catalog in tmp_path, offloads with a 2 s safety lag as in test_offload.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Transaction

from tests.factories import BASE_US, frame, recompute_candles, trade
from ticklake import cli
from ticklake.lake import rederive as rederive_module
from ticklake.lake.arrow_cast import to_lake
from ticklake.lake.catalog import open_catalog
from ticklake.lake.offload import closed_before, commit, offload_bound, offload_table, prepare
from ticklake.lake.rederive import (
    CANDLE_TABLES,
    Rederivation,
    RederiveError,
    RederiveReport,
    Scope,
    cold_catalog,
    make_scope,
    rederive,
)
from ticklake.lake.tables import GOLD_OHLCV, SILVER_TRADES, TABLES, TIMEFRAMES, LakeTable
from ticklake.model import RawFrame, Trade
from ticklake.settings import LakeSettings, Settings, ValidationSettings
from ticklake.warehouse.sql import query
from ticklake.warehouse.writer import WarehouseWriter

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAG_S = 1  # as tests/lake/test_offload.py: no insert is in flight when these tests offload
NAMESPACE = "ticklake"
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
MARKETS = (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD"))
DAY1 = ("2026-01-02", "2026-01-03")  # the day the tests lose or re-validate
SPIKE = "5000.5"  # above the lowered max_price
LOWER_MAX_PRICE = ValidationSettings(max_price="1000")


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    yield open_catalog(LakeSettings(), tmp_path)


# -- data -----------------------------------------------------------------------------------------
def day_tape(day: int, first_id: int, count: int) -> tuple[list[RawFrame], list[Trade]]:
    """Trades of three markets over six hours of one day, ten to a raw frame (received together).
    Trade ids divisible by 120 (binance BTC/USDT ones) are price spikes, and on day 1 one hour (10:00)
    of that market holds only spikes, so a lower max_price empties its windows shorter than a day."""
    frames: list[RawFrame] = []
    trades: list[Trade] = []
    conn = f"conn-{day}"
    for n in range(0, count, 10):
        group = []
        for i in range(first_id + n, first_id + min(n + 10, count)):
            exchange, symbol = MARKETS[i % 3]
            ts = BASE_US + day * DAY_US + (i - first_id) * 21_000_000 % (6 * HOUR_US)
            price = SPIKE if symbol == "BTC/USDT" and i % 40 == 0 else f"{100 + i % 7}.{i % 1000:03d}"
            qty = "0" if i % 97 == 0 else "0.125"  # a few rejects from the start (non_positive_qty)
            group.append((i, exchange, symbol, price, qty, ts))
        received = max(g[5] for g in group) + 5_000
        seq = n // 10 + 1
        for i, exchange, symbol, price, qty, ts in group:
            trades.append(trade(i, price, qty, exchange=exchange, symbol=symbol, side=("buy", "sell")[i % 2],
                                ts_us=ts, received_us=received, conn_id=conn, frame_seq=seq))
        frames.append(frame(json.dumps([g[0] for g in group]), conn_id=conn, frame_seq=seq, received_us=received,
                            trade_count=len(group)))
    if day == 1:  # the spike-only hour
        for k in range(6):
            i = first_id + count + k
            ts = BASE_US + day * DAY_US + 10 * HOUR_US + k * 60_000_000
            trades.append(trade(i, SPIKE, "0.5", ts_us=ts, received_us=ts + 1_000, conn_id=conn, frame_seq=10_000 + k))
            frames.append(frame(f'["spike {i}"]', conn_id=conn, frame_seq=10_000 + k, received_us=ts + 1_000,
                                trade_count=1))
    return frames, trades


def fill(warehouse: Client) -> tuple[list[RawFrame], list[Trade]]:
    """Three days of three markets, stored as the writer stores them."""
    all_frames: list[RawFrame] = []
    all_trades: list[Trade] = []
    writer = WarehouseWriter(warehouse, ValidationSettings())
    for day in range(3):
        frames, trades = day_tape(day, 1 + day * 10_000, 600)
        writer.write(frames, trades)
        all_frames.extend(frames)
        all_trades.extend(trades)
    return all_frames, all_trades


def on_day(trades: list[Trade], day: int) -> list[Trade]:
    return [t for t in trades if t.ts_us // DAY_US == BASE_US // DAY_US + day]


# -- the two tiers --------------------------------------------------------------------------------
def settle(warehouse: Client) -> None:
    """Wait until every stored row is older than the safety lag, by the warehouse's clock."""
    newest = max(int(warehouse.query(f"SELECT toUInt32(max(stored_at)) FROM {table}").result_rows[0][0])
                 for table in ("raw_frames", "bronze_trades", "silver_trades", "dead_letters"))
    while offload_bound(warehouse, LAG_S) < newest:
        time.sleep(0.2)


def offload_all(warehouse: Client, catalog: Catalog) -> dict[str, int]:
    settle(warehouse)
    return {name: offload_table(warehouse, catalog, NAMESPACE, spec, safety_lag_s=LAG_S,
                                max_rows_per_commit=1_000_000).rows for name, spec in TABLES.items()}


def rows(table: pa.Table, without: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    kept = table.drop_columns([c for c in without if c in table.column_names])
    return sorted(tuple(row.values()) for row in kept.to_pylist())


def warm(warehouse: Client, name: str, without: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    spec = TABLES[name]
    if spec.timeframe is None:
        parameters: dict[str, int] = {"lower": 0, "upper": 2**32 - 1}
    else:
        parameters = {"timeframe": spec.timeframe, "closed_from": 0, "closed_before": 2**32 - 1,
                      "changed_after": 2**32 - 1}
    return rows(to_lake(warehouse.query_arrow(query(spec.select_query), parameters=parameters), spec), without)


def cold(catalog: Catalog, name: str, without: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    return rows(catalog.load_table((NAMESPACE, name)).scan().to_arrow(), without)


def warm_closed_candles(warehouse: Client, catalog: Catalog, spec: LakeTable) -> list[tuple[Any, ...]]:
    before = closed_before(catalog.load_table((NAMESPACE, spec.name)))
    return [c for c in warm(warehouse, spec.name) if c[2].timestamp() < before]


def assert_cold_equals_warm(warehouse: Client, catalog: Catalog,
                            tables: tuple[str, ...] = ("raw_frames", "bronze_trades", "silver_trades",
                                                       "dead_letters")) -> None:
    for name in tables:
        assert cold(catalog, name) == warm(warehouse, name), name
    for spec in GOLD_OHLCV.values():
        assert cold(catalog, spec.name) == warm_closed_candles(warehouse, catalog, spec), spec.name
    keys = [(r[0], r[2], r[3]) for r in cold(catalog, "silver_trades")]  # exchange, native symbol, id
    assert len(keys) == len(set(keys)), "a trade is in cold silver twice"


def snapshot(warehouse: Client) -> dict[str, list[tuple[Any, ...]]]:
    """What the warm tier holds, bar the times rows were stored (a re-derivation stores them again)."""
    state = {name: warm(warehouse, name, ("stored_at",)) for name in ("silver_trades", "dead_letters")}
    state.update({name: warm(warehouse, name, ("updated_at",)) for name in CANDLE_TABLES})
    return state


def delete_day(warehouse: Client, *tables: str, exchange: str = "") -> None:
    """A data loss: one day of these warm tables gone."""
    for table in tables:
        column = {"raw_frames": "received_at", "gold_ohlcv": "bucket"}.get(table, "ts")
        market = f" AND exchange = '{exchange}'" if exchange else ""
        warehouse.command(f"DELETE FROM {table} WHERE {column} >= '2026-01-02 00:00:00' "
                          f"AND {column} < '2026-01-03 00:00:00'{market}")


def run(warehouse: Client, catalog: Catalog | None, layer: str, source: str, days: tuple[str, str] = DAY1,
        validation: ValidationSettings | None = None, dry_run: bool = False, exchange: str = "",
        symbol: str = "") -> RederiveReport:
    scope = make_scope(layer, source, days[0], days[1], exchange, symbol)
    return rederive(warehouse, catalog, NAMESPACE, scope, validation or ValidationSettings(), dry_run=dry_run)


def candle_values(candles: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """(exchange, symbol, start, open, high, low, close, volume, trades) of cold-layout candles."""
    return {(c[0], c[1], int(c[2].timestamp()), c[3], c[4], c[5], c[6], c[7], c[10]) for c in candles}


def recomputed(trades: list[Trade], label: str) -> set[tuple[Any, ...]]:
    return {(e, s, start, c.open, c.high, c.low, c.close, c.volume, c.trades)
            for (e, s, start), c in recompute_candles(trades, TIMEFRAMES[label]).items()}


# -- data loss --------------------------------------------------------------------------------------
def test_after_a_data_loss_bronze_then_silver_come_back_from_cold(warehouse: Client, catalog: Catalog) -> None:
    frames, trades = fill(warehouse)
    offload_all(warehouse, catalog)
    bronze_before = warm(warehouse, "bronze_trades")
    before = snapshot(warehouse)
    # ClickHouse loses a whole day of every layer (raw frames too: dead letters find theirs in cold).
    delete_day(warehouse, "raw_frames", "bronze_trades", "silver_trades", "dead_letters", "gold_ohlcv")
    assert snapshot(warehouse) != before

    reloaded = run(warehouse, catalog, "bronze", "cold")
    rebuilt = run(warehouse, catalog, "silver", "cold")

    # Bronze comes back as it was, stored_at included: the lake holds it already.
    assert warm(warehouse, "bronze_trades") == bronze_before
    assert reloaded.written == {"bronze_trades": 606} and reloaded.cold_cleared == []
    # Silver, dead letters and every candle exactly as before the loss.
    assert snapshot(warehouse) == before
    assert rebuilt.written["silver_trades"] + rebuilt.written["dead_letters"] == rebuilt.source_rows == 606
    assert rebuilt.gold_windows_mended == 0
    assert set(rebuilt.cold_cleared) == {"silver_trades", "dead_letters", *CANDLE_TABLES}
    # Each dead letter found its raw frame in the cold tier (warm raw frames of the day are gone).
    payloads = {(f.conn_id, f.frame_seq): f.payload for f in frames}
    rejected = [t for t in on_day(trades, 1) if t.qty == "0"]
    dead = {(d[3], d[13]) for d in warm(warehouse, "dead_letters") if _day(d) == 1}
    assert dead == {(t.trade_id, payloads[(t.conn_id, t.frame_seq)]) for t in rejected} and rejected
    # The offloader copies the rebuilt rows once: cold equals warm, no trade twice. (Raw frames are not
    # re-derived: the cold tier keeps the day's.)
    offloaded = offload_all(warehouse, catalog)
    assert offloaded["silver_trades"] == rebuilt.written["silver_trades"] and offloaded["bronze_trades"] == 0
    assert_cold_equals_warm(warehouse, catalog, ("bronze_trades", "silver_trades", "dead_letters"))
    assert set(warm(warehouse, "raw_frames")) < set(cold(catalog, "raw_frames"))


# -- a validation rule changes -----------------------------------------------------------------------
def test_a_lower_max_price_moves_trades_to_dead_letters_in_warm_and_cold(warehouse: Client,
                                                                        catalog: Catalog) -> None:
    _, trades = fill(warehouse)
    offload_all(warehouse, catalog)
    day1 = on_day(trades, 1)
    spikes = [t for t in day1 if t.price == SPIKE]
    spike_hour = datetime.fromtimestamp((BASE_US + DAY_US + 10 * HOUR_US) / 1e6, UTC)
    assert any(c[2] == spike_hour for c in cold(catalog, "gold_ohlcv_1h"))
    other_days = {name: [r for r in rows_ if _day(r) != 1] for name, rows_ in snapshot(warehouse).items()}

    report = run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE)

    dead = [d for d in warm(warehouse, "dead_letters") if d[9] == "absurd_price"]
    assert sorted((d[0], d[1], d[3]) for d in dead) == sorted((t.exchange, t.native_symbol, t.trade_id) for t in spikes)
    assert {d[10] for d in dead} == {f"price {SPIKE} > 1000"}
    assert all(d[13] for d in dead)  # each keeps its raw frame
    silver_ids = {r[3] for r in warm(warehouse, "silver_trades")}
    assert not silver_ids & {t.trade_id for t in spikes}
    kept = [t for t in day1 if t.price != SPIKE and t.qty != "0"]
    for label in TIMEFRAMES:
        candles = [c for c in warm(warehouse, f"gold_ohlcv_{label}") if _day(c) == 1]
        assert candle_values(candles) == recomputed(kept, label), label
    # The spike-only hour has no candle left below 1d; the other days are untouched.
    assert not any(c[2] == spike_hour for c in warm(warehouse, "gold_ohlcv_1h"))
    assert {name: [r for r in rows_ if _day(r) != 1] for name, rows_ in snapshot(warehouse).items()} == other_days
    assert report.written["dead_letters"] == len(spikes) + len([t for t in day1 if t.qty == "0"])

    offload_all(warehouse, catalog)

    assert_cold_equals_warm(warehouse, catalog)
    # Windows that lost every candle are gone from cold too (no warm candle was left to rewrite them).
    for label in ("1m", "5m", "15m", "30m", "1h"):
        assert not any(c[2] == spike_hour for c in cold(catalog, f"gold_ohlcv_{label}")), label


def test_a_rerun_changes_nothing(warehouse: Client, catalog: Catalog) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE)
    after_first = snapshot(warehouse)

    again = run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE)

    assert snapshot(warehouse) == after_first
    assert again.gold_windows_mended == 0
    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)


def test_one_market_only(warehouse: Client, catalog: Catalog) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    before = snapshot(warehouse)

    report = run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE, exchange="binance",
                 symbol="BTC/USDT")

    after = snapshot(warehouse)
    for name in before:  # every other market and day is as it was
        assert [r for r in after[name] if not _btc_day1(name, r)] == [r for r in before[name] if not _btc_day1(name, r)]
    assert report.markets == 1 and report.source_rows == 200 + 6
    assert [r for r in after["dead_letters"] if _btc_day1("dead_letters", r)] != []
    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)


def _btc_day1(name: str, row: tuple[Any, ...]) -> bool:
    symbol = row[2] if name == "dead_letters" else row[1]
    return bool(symbol == "BTC/USDT" and _day(row) == 1)


# -- gold -------------------------------------------------------------------------------------------
def test_gold_from_warm_silver_recomputes_lost_candles(warehouse: Client, catalog: Catalog) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    before = snapshot(warehouse)
    delete_day(warehouse, "gold_ohlcv")

    report = run(warehouse, catalog, "gold", "warm")

    assert snapshot(warehouse) == before
    assert report.replaced == {"gold_ohlcv": 0} and report.written["gold_ohlcv"] > 0
    assert report.cold_cleared == list(CANDLE_TABLES)
    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)


def test_gold_from_cold_silver_reloads_silver_without_offloading_it_again(warehouse: Client,
                                                                          catalog: Catalog) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    silver_before = warm(warehouse, "silver_trades")
    before = snapshot(warehouse)
    delete_day(warehouse, "silver_trades", "gold_ohlcv")  # silver expired or lost; gold lost

    run(warehouse, catalog, "gold", "cold")

    assert warm(warehouse, "silver_trades") == silver_before  # stored_at kept
    assert snapshot(warehouse) == before
    offloaded = offload_all(warehouse, catalog)
    assert offloaded["silver_trades"] == 0  # the lake had them: not taken again
    assert_cold_equals_warm(warehouse, catalog)


# -- crashes and races --------------------------------------------------------------------------------
def test_a_crash_half_way_is_mended_by_running_again(warehouse: Client, catalog: Catalog,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, trades = fill(warehouse)
    offload_all(warehouse, catalog)
    insert = Rederivation._insert
    calls = 0

    def insert_then_die(self: Rederivation, table: str, rows_: pa.Table) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise SystemExit("killed half way through writing the range")
        insert(self, table, rows_)

    monkeypatch.setattr(Rederivation, "_insert", insert_then_die)
    with pytest.raises(SystemExit):
        run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE)
    monkeypatch.undo()
    # The offloader runs meanwhile and copies the half-written range to cold.
    assert offload_all(warehouse, catalog)["silver_trades"] > 0

    run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE)

    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)
    day1 = on_day(trades, 1)
    silver = {r[3] for r in warm(warehouse, "silver_trades") if _day(r) == 1}
    dead = {r[3] for r in warm(warehouse, "dead_letters") if _day(r) == 1}
    assert silver == {t.trade_id for t in day1 if t.price != SPIKE and t.qty != "0"}
    assert dead == {t.trade_id for t in day1 if t.price == SPIKE or t.qty == "0"}


def test_an_offload_that_read_the_range_before_it_was_deleted_cannot_commit(warehouse: Client,
                                                                            catalog: Catalog) -> None:
    writer = WarehouseWriter(warehouse, ValidationSettings())
    writer.write(*day_tape(0, 1, 300))
    offload_all(warehouse, catalog)  # cold silver holds day 0 only
    writer.write(*day_tape(1, 10_001, 300))
    settle(warehouse)
    table = catalog.load_table((NAMESPACE, "silver_trades"))
    batch = prepare(warehouse, table, SILVER_TRADES, offload_bound(warehouse, LAG_S), 1_000_000)
    assert batch is not None and batch.rows.num_rows > 0  # day 1, read before the re-derivation

    run(warehouse, catalog, "silver", "warm")  # nothing of day 1 in cold to delete: an empty snapshot

    with pytest.raises(CommitFailedException):
        commit(table, batch)
    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)


def test_a_cold_delete_that_loses_a_race_is_made_again(warehouse: Client, catalog: Catalog, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    rival = open_catalog(LakeSettings(), tmp_path)  # another process: an offloader, a compaction
    delete = Transaction.delete
    raced: list[str] = []

    def delete_after_a_rival_commit(self: Transaction, *args: Any, **kwargs: Any) -> None:
        name = self._table.name()[-1]
        if name not in raced:  # the first attempt on each table: someone commits meanwhile
            raced.append(name)
            table = rival.load_table((NAMESPACE, name))
            with table.transaction() as tx:
                tx.append(table.schema().as_arrow().empty_table())
        delete(self, *args, **kwargs)

    monkeypatch.setattr(Transaction, "delete", delete_after_a_rival_commit)
    report = run(warehouse, catalog, "silver", "warm", validation=LOWER_MAX_PRICE)
    monkeypatch.undo()

    assert sorted(raced) == sorted(report.cold_cleared) == sorted(["silver_trades", "dead_letters", *CANDLE_TABLES])
    snapshots = catalog.load_table((NAMESPACE, "silver_trades")).snapshots()
    tags = [s.summary.get("ticklake.rederive") if s.summary else None for s in snapshots]
    ours = [i for i, tag in enumerate(tags) if tag]
    assert ours[-1] == len(snapshots) - 1 and tags[ours[0] - 1] is None  # made again after the rival's
    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)


# -- checks: nothing changes ----------------------------------------------------------------------------
def test_a_source_that_lost_rows_is_refused(warehouse: Client, catalog: Catalog) -> None:
    fill(warehouse)
    delete_day(warehouse, "bronze_trades", exchange="kraken")  # warm bronze lost a market's day
    before = snapshot(warehouse)

    with pytest.raises(RederiveError, match=r"warm bronze holds fewer trades.*kraken BTC/USD 2026-01-02: 0 < 200"):
        run(warehouse, catalog, "silver", "warm")
    delete_day(warehouse, "bronze_trades")
    with pytest.raises(RederiveError, match=r"warm bronze holds no trade on 2026-01-02.*--from cold"):
        run(warehouse, catalog, "silver", "warm")
    assert snapshot(warehouse) == before
    delete_day(warehouse, "silver_trades", exchange="kraken")  # silver lost rows gold still counts
    with pytest.raises(RederiveError, match=r"warm silver holds fewer trades than the warm gold.*--layer silver"):
        run(warehouse, catalog, "gold", "warm")


def test_cold_sources_must_hold_the_range(warehouse: Client, catalog: Catalog) -> None:
    with pytest.raises(RederiveError, match=r"holds no ticklake\.bronze_trades table"):
        run(warehouse, catalog, "silver", "cold")
    with pytest.raises(RederiveError, match="needs the cold tier"):
        run(warehouse, None, "silver", "cold")
    fill(warehouse)
    offload_all(warehouse, catalog)
    WarehouseWriter(warehouse, ValidationSettings()).write(*day_tape(1, 20_001, 30))  # not offloaded yet

    with pytest.raises(RederiveError, match=r"not hold yet.*Run the offload first"):
        run(warehouse, catalog, "bronze", "cold")
    with pytest.raises(RederiveError, match="cold bronze holds fewer trades"):
        run(warehouse, catalog, "silver", "cold")


def test_one_market_is_refused_when_the_offloader_would_drop_other_markets_from_cold(
        warehouse: Client, catalog: Catalog) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    delete_day(warehouse, "gold_ohlcv", exchange="kraken")  # kraken's candles only in cold now

    with pytest.raises(RederiveError, match="candles of markets outside --exchange/--symbol"):
        run(warehouse, catalog, "silver", "warm", exchange="binance")
    run(warehouse, catalog, "silver", "warm")  # every market: kraken's candles come back too
    offload_all(warehouse, catalog)
    assert_cold_equals_warm(warehouse, catalog)


def test_a_dry_run_reports_and_changes_nothing(warehouse: Client, catalog: Catalog) -> None:
    fill(warehouse)
    offload_all(warehouse, catalog)
    before = snapshot(warehouse)
    snapshots = len(catalog.load_table((NAMESPACE, "silver_trades")).snapshots())

    report = run(warehouse, catalog, "silver", "cold", dry_run=True)

    assert report.dry_run and report.source_rows == 606 and report.markets == 3
    assert report.replaced["silver_trades"] + report.replaced["dead_letters"] == 606
    assert report.written == {} and report.cold_cleared == []
    assert snapshot(warehouse) == before
    assert len(catalog.load_table((NAMESPACE, "silver_trades")).snapshots()) == snapshots


@pytest.mark.parametrize(("args", "message"), [
    (("silver", "warm", "2026-01-02", "2026-01-02"), "must be after --start"),
    (("silver", "warm", "2026-01-03", "2026-01-02"), "must be after --start"),
    (("silver", "warm", "2026-01-02T10:00:00Z", "2026-01-03"), "not 00:00 UTC.*use 2026-01-02 or 2026-01-03"),
    (("silver", "warm", "2026-01-02", "2026-01-03T00:00:00+02:00"), "not 00:00 UTC"),
    (("silver", "warm", "yesterday", "2026-01-03"), "not an ISO date"),
    (("silver", "warm", "2026-01-02", "2999-01-01"), "in the future"),
    (("platinum", "warm", "2026-01-02", "2026-01-03"), "unknown layer"),
    (("silver", "lukewarm", "2026-01-02", "2026-01-03"), "unknown source"),
    (("bronze", "warm", "2026-01-02", "2026-01-03"), "bronze is reloaded from the cold tier"),
])
def test_bad_arguments_are_clear_errors(args: tuple[str, str, str, str], message: str) -> None:
    with pytest.raises(RederiveError, match=message):
        make_scope(*args)


def test_a_scope_is_whole_days() -> None:
    scope = make_scope("silver", "warm", "2026-01-02", "2026-01-05T00:00:00Z", exchange=" binance ")
    assert isinstance(scope, Scope)
    assert [str(d) for d in scope.days] == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert scope.exchange == "binance" and scope.filtered


# -- the command ---------------------------------------------------------------------------------------
def test_cli_bad_arguments_exit_2_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKLAKE_DATA_DIR", str(tmp_path))
    code = cli.main(["rederive", "--layer", "silver", "--from", "warm", "--start", "2026-01-03", "--end", "2026-01-02"])
    assert code == 2
    assert "--end 2026-01-02 must be after --start 2026-01-03" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["rederive", "--layer", "platinum", "--from", "warm", "--start", "2026-01-02", "--end", "2026-01-03"])
    assert exited.value.code == 2
    assert "invalid choice: 'platinum'" in capsys.readouterr().err
    assert not (tmp_path / "clickhouse").exists()  # refused before the warehouse was opened


def test_cli_on_an_empty_warehouse_says_there_is_nothing_to_rebuild(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    env.update({"TICKLAKE_DATA_DIR": str(tmp_path), "TZ": "UTC", "PYTHONPATH": str(REPO / "src")})
    done = subprocess.run([sys.executable, "-m", "ticklake.cli", "rederive", "--layer", "silver", "--from", "warm",
                           "--start", "2026-01-02", "--end", "2026-01-03"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "warm bronze holds no trade on 2026-01-02" in done.stderr
    assert not (tmp_path / "lake").exists()  # from warm, no lake is created where there was none


FILL_SCRIPT = """
import sys
from pathlib import Path
from tests.lake.test_rederive import day_tape
from ticklake.settings import Settings, ValidationSettings
from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.writer import WarehouseWriter
settings = Settings(data_dir=Path(sys.argv[1]))
client = open_client(settings.resolved_warehouse_url, settings.database)
migrate.upgrade(client)
WarehouseWriter(client, ValidationSettings()).write(*day_tape(1, 10_001, 300))
client.close()
"""


def test_cli_rederives_and_prints_its_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    env.update({"TICKLAKE_DATA_DIR": str(tmp_path), "TZ": "UTC", "PYTHONPATH": f"{REPO / 'src'}:{REPO}",
                "TICKLAKE_VALIDATION__MAX_PRICE": "1000"})
    subprocess.run([sys.executable, "-c", FILL_SCRIPT, str(tmp_path)], env=env, cwd=REPO, check=True, timeout=120)

    done = subprocess.run([sys.executable, "-m", "ticklake.cli", "rederive", "--layer", "silver", "--from", "warm",
                           "--start", "2026-01-02", "--end", "2026-01-03"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    spikes = 2 + 6  # ids 10080, 10200 (every 120th) and the spike-only hour
    assert report["source_rows"] == 306 and report["written"]["dead_letters"] == spikes + 3  # + qty 0
    assert report["written"]["silver_trades"] == 306 - spikes - 3 and report["cold_cleared"] == []


def test_the_cold_catalog_is_optional_from_warm_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert cold_catalog(settings, "warm") is None  # no lake under data_dir: nothing to keep in step
    assert not (tmp_path / "lake").exists()
    assert cold_catalog(settings, "cold") is not None
    assert cold_catalog(settings, "warm") is not None  # the lake exists now: it is kept in step


def test_the_cold_candle_tables_are_the_offloaders() -> None:
    assert set(CANDLE_TABLES) == {spec.name for spec in GOLD_OHLCV.values()}
    assert rederive_module.NOT_FROM_BRONZE == ("bad_trade_id", "bad_timestamp")


def _day(row: tuple[Any, ...]) -> int:
    """The day (0, 1, 2 from BASE) of a silver, dead-letter or candle row."""
    moment = next(v for v in row if isinstance(v, datetime))
    return int(moment.timestamp() * 1_000_000) // DAY_US - BASE_US // DAY_US


