"""Re-derivation: rebuild a warm layer, for whole UTC days, from the layer below (docs/lake.md).

    ticklake rederive --layer {silver,gold,bronze} --from {warm,cold} --start DAY --end DAY
                      [--exchange X] [--symbol S] [--dry-run]

- ``silver`` (with its dead letters and gold): every bronze trade of the range validated again with the
  *current* rules, read from warm bronze or from the cold ``bronze_trades``. A trade that now fails goes
  to dead letters with its rule; one that now passes reaches silver; the gold view builds the candles.
- ``gold``: the candles of the range computed again from silver. From warm silver, one INSERT ... SELECT
  a day. From cold ``silver_trades``: the cold rows are put back into warm silver *with their own
  stored_at*, so the offloader never takes them again (the lake holds them already; rows older than
  silver's retention expire again at the next merge), and the gold view builds the candles from them.
- ``bronze`` (from cold only): warm bronze reloaded, stored_at kept. After a data loss this comes first:
  bronze is what the writer recognizes repeated trades against.

**Whole UTC days.** A 1d candle spans a day: with day boundaries, every window a re-derivation rebuilds
lies inside the range, so it is rebuilt from the rebuilt rows only (never from warm rows outside the
range, which may have expired), and the cold tier's day partitions are dropped whole where they can be.

**Exactly once, warm and cold.** The steps, in this order:

1. *Check*, changing nothing: the source holds every day of the range and, per market and day, at
   least as many trades as the warm rows it replaces (fewer means the source lost rows: rebuilding
   would lose them too); a cold source has offloaded the whole range; see ``_check_other_candles``.
2. *Delete the warm range* (ClickHouse lightweight deletes: gone for every query when they return).
3. *Delete the cold range* of every cold table the warm rows will reach again (silver, dead letters,
   candles): one Iceberg commit per table, which always makes a snapshot (an empty append when nothing
   matched). Tables have ``commit.retry.num-retries=0`` and an offload commit requires the snapshot its
   run started from, so an offloader that read warm rows of the range before step 2 fails its commit
   instead of appending them after this delete; when an offload (or maintenance) commits first, this
   delete fails, and is made again on the reloaded table (a delete by filter can be repeated).
4. *Write the warm range* again: new stored_at, so the offloader copies the rows to cold once more;
   candles get a new updated_at, so the offloader rewrites their windows in cold. A window left with no
   candle at all (every trade now dead-lettered) was deleted from cold in step 3 and stays deleted.
5. *Check gold against silver* per window and recompute any that disagree (normally none).

**Crashes.** Every step can be repeated, so a re-run of the same command converges: after a crash in
steps 2-4 the warm and cold ranges are partly empty or partly written; the re-run's checks pass (the
source still holds everything; the targets hold less), and it deletes both ranges and writes them again.
What the offloader copied to cold in between is deleted by the re-run's step 3. Until the re-run, the
range is incomplete in warm, and in cold after step 3.

It must run while nothing else writes the range (ingestion stopped, as for ``ticklake repair``): a
trade ingested between steps 2 and 4 would be stored twice. The embedded warehouse enforces this (one
process at a time); with a ClickHouse server, stop the ingesters. Offloaders may keep running.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, In, LessThanOrEqual
from pyiceberg.table import Table

from ticklake.lake import cold_tables
from ticklake.lake.arrow_cast import conform, for_warm
from ticklake.lake.catalog import lake_dir, open_catalog
from ticklake.lake.cold_tables import time_range
from ticklake.lake.offload import watermark
from ticklake.lake.tables import GOLD_OHLCV
from ticklake.model import Trade
from ticklake.settings import Settings, ValidationSettings
from ticklake.times import iso_us, utc_from_seconds, utc_from_us
from ticklake.warehouse import arrow, gold
from ticklake.warehouse.reader import timeframe_seconds
from ticklake.warehouse.sql import query
from ticklake.warehouse.validation import Validator, Violation

log = logging.getLogger(__name__)

LAYERS = ("silver", "gold", "bronze")
SOURCES = ("warm", "cold")
DAY = timedelta(days=1)
DAY_US = 86_400_000_000
# Rules only a trade that could not be stored in bronze breaks (writer.split_batch sends it straight to
# dead letters): such a dead letter has no bronze row to be derived from again, so it is kept.
NOT_FROM_BRONZE = ("bad_trade_id", "bad_timestamp")
CANDLE_TABLES = tuple(spec.name for spec in GOLD_OHLCV.values())
CHUNK_ROWS = 200_000  # validated and inserted at a time
ROW_BY_ROW = 2_000  # a failing batch is halved down to this size, then checked trade by trade
COMMIT_ATTEMPTS = 5  # a cold delete that loses a race to an offload is made again on the new snapshot
LISTED = 5  # examples named in an error
BRONZE_LAYOUT = arrow.bronze([]).schema  # what the validator reads: the writer's bronze columns

MarketDay = tuple[str, str, date]  # exchange, symbol, UTC day
Counts = dict[MarketDay, int]


class RederiveError(ValueError):
    """A re-derivation refused before anything changed: the message says why and what to do."""


@dataclass(frozen=True)
class Scope:
    """What to rebuild: a layer, from warm or cold, over whole UTC days, one market or more."""

    layer: str
    source: str
    start: datetime  # 00:00 UTC
    end: datetime  # 00:00 UTC, after start
    exchange: str = ""  # "" = every exchange
    symbol: str = ""  # canonical symbol; "" = every symbol

    @property
    def days(self) -> list[date]:
        count = (self.end - self.start) // DAY
        return [(self.start + n * DAY).date() for n in range(count)]

    @property
    def filtered(self) -> bool:
        return bool(self.exchange or self.symbol)

    def params(self, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
        return {"start": start or self.start, "end": end or self.end, "exchange": self.exchange,
                "symbol": self.symbol}

    def describe(self) -> str:
        markets = " ".join(part for part in (self.exchange, self.symbol) if part) or "every market"
        return f"{markets}, {self.start.date()} to {self.end.date()} (end excluded)"


@dataclass
class RederiveReport:
    layer: str
    source: str
    start: str
    end: str
    exchange: str
    symbol: str
    dry_run: bool
    source_rows: int = 0  # trades the source holds in the range
    markets: int = 0  # (exchange, symbol) pairs among them
    replaced: dict[str, int] = field(default_factory=dict)  # warm rows (gold: candles) the range held
    written: dict[str, int] = field(default_factory=dict)  # warm rows (gold: candles) it holds now
    cold_cleared: list[str] = field(default_factory=list)  # cold tables whose range was deleted
    gold_windows_mended: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the scope ---------------------------------------------------------------------------------------
def parse_day(text: str, name: str) -> datetime:
    """An ISO date or date-time at 00:00 UTC (a time without a zone is UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RederiveError(f"--{name} {text!r} is not an ISO date or time (e.g. 2026-01-01 or "
                            "2026-01-01T00:00:00Z)") from None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    if value != day:
        raise RederiveError(
            f"--{name} {text} is not 00:00 UTC: a re-derivation rebuilds whole UTC days (a 1d candle spans one); "
            f"use {day.date()} or {(day + DAY).date()}")
    return value


def make_scope(layer: str, source: str, start: str, end: str, exchange: str = "", symbol: str = "",
               now: datetime | None = None) -> Scope:
    """The scope these arguments name, or a RederiveError saying what is wrong with them."""
    if layer not in LAYERS:
        raise RederiveError(f"unknown layer {layer!r}: choose from {', '.join(LAYERS)}")
    if source not in SOURCES:
        raise RederiveError(f"unknown source {source!r}: choose from {', '.join(SOURCES)}")
    if layer == "bronze" and source == "warm":
        raise RederiveError("bronze is reloaded from the cold tier (--layer bronze --from cold); raw frames are "
                            "re-parsed into bronze by `ticklake repair`")
    first, last = parse_day(start, "start"), parse_day(end, "end")
    if last <= first:
        raise RederiveError(f"--end {last.date()} must be after --start {first.date()} (the end day is excluded)")
    tomorrow = (now or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + DAY
    if last > tomorrow:
        raise RederiveError(f"--end {last.date()} is in the future: the latest end is {tomorrow.date()} "
                            "(today included)")
    return Scope(layer=layer, source=source, start=first, end=last, exchange=exchange.strip(),
                 symbol=symbol.strip())


def cold_catalog(settings: Settings, source: str) -> Catalog | None:
    """The lake's catalog; None when there is no cold tier to keep in step: the default embedded lake
    was never created (nothing was ever offloaded). A re-derivation from warm then creates no lake."""
    lake = settings.lake
    embedded = lake.catalog == "sql" and not lake.uri
    if source == "warm" and embedded and not (lake_dir(settings.data_dir) / "catalog.db").exists():
        return None
    return open_catalog(lake, settings.data_dir)


# -- the cold tier ---------------------------------------------------------------------------------------
class ColdTier:
    """The cold tables a re-derivation reads and clears."""

    def __init__(self, catalog: Catalog, namespace: str, run_id: str) -> None:
        self.catalog = catalog
        self.namespace = namespace
        self.run_id = run_id

    def table(self, name: str) -> Table | None:
        return cold_tables.load_if_exists(self.catalog, self.namespace, name)

    def require(self, name: str) -> Table:
        table = self.table(name)
        if table is None:
            raise RederiveError(f"the cold tier holds no {self.namespace}.{name} table: nothing was offloaded to it "
                                "yet (or lake.* names another lake)")
        return table

    scan = staticmethod(cold_tables.scan)

    def delete(self, name: str, row_filter: BooleanExpression) -> None:
        """Delete the rows matching ``row_filter`` in one commit that always makes a snapshot (see the
        module docstring, step 3); made again on the reloaded table when another commit wins the race."""
        cold_tables.delete_committing(self.catalog, self.namespace, name, row_filter,
                                      {"ticklake.rederive": self.run_id}, COMMIT_ATTEMPTS)


# -- arrow helpers -------------------------------------------------------------------------------------
def _unique(rows: pa.Table) -> pa.Table:
    """Each trade (exchange, native symbol, id) once, the first row kept: the cold tier may hold a row
    twice (docs/lake.md, pitfalls), and a row stored twice would be counted twice by gold."""
    keys = ["exchange", "native_symbol", "trade_id"]
    if rows.num_rows == 0:
        return rows
    numbered = rows.select(keys).append_column("row", pa.array(range(rows.num_rows), pa.int64()))
    first = numbered.group_by(keys).aggregate([("row", "min")])
    if first.num_rows == rows.num_rows:
        return rows
    log.warning("the source holds %d rows twice: each is re-derived once", rows.num_rows - first.num_rows)
    return rows.take(pa.array(sorted(first.column("row_min").to_pylist()), pa.int64()))


def _trades(rows: pa.Table) -> list[Trade]:
    """Bronze-layout rows as trades, for the validator's row-by-row check."""
    names = ("exchange", "symbol", "native_symbol", "trade_id", "price", "qty", "side", "conn_id", "frame_seq")
    columns = [rows.column(name).to_pylist() for name in names]
    ts = rows.column("ts").cast(pa.int64()).to_pylist()
    received = rows.column("received_at").cast(pa.int64()).to_pylist()
    return [Trade(exchange=e, symbol=s, native_symbol=n, trade_id=i, price=p, qty=q, side=side, ts_us=t,
                  received_us=r, conn_id=c, frame_seq=f)
            for e, s, n, i, p, q, side, c, f, t, r in zip(*columns, ts, received, strict=True)]


def _day_counts(rows: pa.Table) -> Counts:
    """Rows per (exchange, symbol, UTC day) of a table with exchange, symbol and ts columns."""
    if rows.num_rows == 0:
        return {}
    days = pc.divide(rows.column("ts").cast(pa.int64()), DAY_US)
    grouped = pa.table({"exchange": rows.column("exchange"), "symbol": rows.column("symbol"), "day": days}) \
        .group_by(["exchange", "symbol", "day"]).aggregate([("day", "count")])
    epoch = date(1970, 1, 1)
    return {(e, s, epoch + timedelta(days=d)): n for e, s, d, n in zip(
        grouped.column("exchange").to_pylist(), grouped.column("symbol").to_pylist(),
        grouped.column("day").to_pylist(), grouped.column("day_count").to_pylist(), strict=True)}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def _examples(keys: Sequence[Any]) -> str:
    shown = ", ".join(str(key) for key in keys[:LISTED])
    return shown + (f" and {len(keys) - LISTED} more" if len(keys) > LISTED else "")


# -- the re-derivation ---------------------------------------------------------------------------------
class Rederivation:
    def __init__(self, client: Client, catalog: Catalog | None, namespace: str, scope: Scope,
                 validation: ValidationSettings, dry_run: bool = False) -> None:
        self.client = client
        self.scope = scope
        self.validator = Validator(validation)
        self.run_id = uuid.uuid4().hex
        self.cold = ColdTier(catalog, namespace, self.run_id) if catalog is not None else None
        self.report = RederiveReport(layer=scope.layer, source=scope.source, start=scope.start.isoformat(),
                                     end=scope.end.isoformat(), exchange=scope.exchange, symbol=scope.symbol,
                                     dry_run=dry_run)
        self._inserts = 0

    def run(self) -> RederiveReport:
        started = time.monotonic()
        scope = self.scope
        source = self.check()
        if not self.report.dry_run:
            log.info("re-deriving %s from %s %s", scope.layer, scope.source, scope.describe())
            self.delete_warm()
            self.clear_cold()
            self.write(source)
            if scope.layer != "bronze":
                self.report.gold_windows_mended = self.mend_gold()
                self.report.written["gold_ohlcv"] = self._candles()
        self.report.seconds = round(time.monotonic() - started, 3)
        return self.report

    # -- 1. check --------------------------------------------------------------------------------
    def check(self) -> Counts:
        """The source's trades per market and day, once every check passed."""
        scope = self.scope
        if scope.source == "cold" and self.cold is None:
            raise RederiveError("--from cold needs the cold tier: no lake exists under data_dir (lake.* settings)")
        targets: dict[str, Counts] = {}
        if scope.layer == "silver":
            source_name = f"{scope.source} bronze"
            source = (self._warm_counts("bronze_trades") if scope.source == "warm"
                      else self._cold_counts("bronze_trades"))
            silver, dead = self._warm_counts("silver_trades"), self._dead_letter_counts()
            targets["silver and dead letters"] = _sum(silver, dead)
            self.report.replaced = {"silver_trades": sum(silver.values()), "dead_letters": sum(dead.values()),
                                    "gold_ohlcv": self._candles()}
        elif scope.layer == "gold":
            source_name = f"{scope.source} silver"
            candles = self._candles()
            if scope.source == "warm":
                source = self._warm_counts("silver_trades")
            else:
                source = self._cold_counts("silver_trades")
                silver = self._warm_counts("silver_trades")
                targets["silver"] = silver
                self.report.replaced["silver_trades"] = sum(silver.values())
                self._check_offloaded("silver_trades")
            targets["gold"] = self._gold_counts()
            self.report.replaced["gold_ohlcv"] = candles
        else:
            source_name = "cold bronze"
            source = self._cold_counts("bronze_trades")
            bronze = self._warm_counts("bronze_trades")
            targets["bronze"] = bronze
            self.report.replaced["bronze_trades"] = sum(bronze.values())
            self._check_offloaded("bronze_trades")
        self._check_days(source, source_name)
        for target_name, target in targets.items():
            self._check_counts(source, source_name, target, target_name)
        if scope.filtered and scope.layer != "bronze":
            self._check_other_candles()
        self.report.source_rows = sum(source.values())
        self.report.markets = len({(exchange, symbol) for exchange, symbol, _ in source})
        return source

    def _warm_counts(self, table: str) -> Counts:
        rows = self.client.query(query("rederive_trade_counts"), parameters={"table": table, **self.scope.params()})
        return {(str(e), str(s), d): int(n) for e, s, d, n in rows.result_rows}

    def _dead_letter_counts(self) -> Counts:
        rows = self.client.query(query("rederive_dead_letter_counts"),
                                 parameters={"not_from_bronze": list(NOT_FROM_BRONZE), **self.scope.params()})
        return {(str(e), str(s), d): int(n) for e, s, d, n in rows.result_rows}

    def _gold_counts(self) -> Counts:
        rows = self.client.query(query("rederive_gold_counts"), parameters=self.scope.params())
        return {(str(e), str(s), d): int(n) for e, s, d, n in rows.result_rows}

    def _candles(self) -> int:
        return int(self.client.query(query("rederive_candle_count"), parameters=self.scope.params()).result_rows[0][0])

    def _cold_counts(self, name: str) -> Counts:
        assert self.cold is not None
        scope = self.scope
        table = self.cold.require(name)
        held_until = watermark(table)
        if held_until < scope.end.timestamp():
            held = utc_from_seconds(held_until).isoformat() if held_until else "nothing yet"
            raise RederiveError(
                f"cold {name} holds rows stored up to {held} (its watermark), and the range ends at "
                f"{scope.end.isoformat()}: the range's last trades may not be offloaded yet. Run the offload "
                "first, or end the range earlier")
        counts: Counts = {}
        for day in scope.days:  # a day at a time: three columns of a month of trades would not fit in memory
            start = _midnight(day)
            rows = self.cold.scan(table, time_range("ts", start, start + DAY, scope.exchange, scope.symbol),
                                  ("exchange", "symbol", "ts"))
            counts.update(_day_counts(rows))
        return counts

    def _check_offloaded(self, name: str) -> None:
        """Reloading a warm table from cold replaces its rows: each must be in cold already."""
        assert self.cold is not None
        held_until = watermark(self.cold.require(name))
        waiting = int(self.client.query(query("rederive_not_offloaded"), parameters={
            "table": name, "watermark": held_until, **self.scope.params()}).result_rows[0][0])
        if waiting:
            raise RederiveError(f"warm {name} holds {waiting} rows of the range that the cold tier does not hold yet "
                                "(stored after its watermark): reloading from cold would lose them. Run the offload "
                                "first")

    def _check_days(self, source: Counts, source_name: str) -> None:
        held = {day for (_, _, day), count in source.items() if count}
        missing = [day for day in self.scope.days if day not in held]
        if not missing:
            return
        if self.scope.source == "cold":
            hint = "the cold tier holds what the offloader took"
        else:
            layer = source_name.split()[-1]
            hint = f"warm {layer} keeps retention.{layer}_days days: use --from cold"
        markets = f" for {self.scope.exchange} {self.scope.symbol}".rstrip() if self.scope.filtered else ""
        raise RederiveError(f"{source_name} holds no trade{markets} on {_examples([str(d) for d in missing])}: there "
                            f"is nothing to rebuild those days from ({hint}), or narrow the range")

    def _check_counts(self, source: Counts, source_name: str, target: Counts, target_name: str) -> None:
        """Per market and day, the source must hold at least the trades of what it replaces: fewer means
        the source lost rows (expired from warm, not offloaded yet), and rebuilding would lose them too."""
        short = sorted(key for key, count in target.items() if source.get(key, 0) < count)
        if not short:
            return
        examples = _examples([f"{e} {s or '(unmapped)'} {d}: {source.get((e, s, d), 0)} < {target[(e, s, d)]}"
                              for e, s, d in short])
        if self.scope.source == "cold":
            hint = "rows stored lately may not be offloaded yet: run the offload first"
        else:
            hint = f"it keeps retention.{source_name.split()[-1]}_days days: use --from cold"
        if target_name == "gold":
            hint += ("; or gold is the one that is wrong (it counted a trade twice: silver held a row twice): then "
                     "re-derive silver (--layer silver), which rebuilds gold from bronze")
        raise RederiveError(f"{source_name} holds fewer trades than the warm {target_name} it would replace "
                            f"({examples}): the source has lost rows, and re-deriving would lose them too; {hint}")

    def _check_other_candles(self) -> None:
        """With --exchange/--symbol: the offloader rewrites a cold window whose warm candle changed as a
        whole bucket, every market's candle taken from warm. A market left alone whose candle the cold tier
        holds but warm gold no longer does (expired, lost) would be dropped from cold: refuse."""
        if self.cold is None:
            return
        scope = self.scope
        for label, spec in GOLD_OHLCV.items():
            table = self.cold.table(spec.name)
            if table is None:
                continue
            others = self.cold.scan(table, time_range("bucket", scope.start, scope.end, scope.exchange,
                                                        scope.symbol, other_markets=True),
                                    ("exchange", "symbol", "bucket"))
            if others.num_rows == 0:
                continue
            seconds = pc.divide(others.column("bucket").cast(pa.int64()), 1_000_000).to_pylist()
            in_cold = set(zip(others.column("exchange").to_pylist(), others.column("symbol").to_pylist(), seconds,
                              strict=True))
            warm = self.client.query(query("rederive_other_candles"), parameters={"timeframe": spec.timeframe,
                                                                                  **scope.params()}).result_rows
            missing = sorted(in_cold - {(str(e), str(s), int(b)) for e, s, b in warm})
            if missing:
                examples = _examples([f"{e} {s} {utc_from_seconds(b).isoformat()}" for e, s, b in missing])
                raise RederiveError(
                    f"the cold tier holds {len(missing)} {label} candles of markets outside --exchange/--symbol in "
                    f"this range that warm gold no longer holds ({examples}): the offloader rewrites a changed window "
                    "whole from warm gold and would drop them. Re-derive every market of the range (no "
                    "--exchange/--symbol), or narrow the range")

    # -- 2. delete the warm range ------------------------------------------------------------------
    def delete_warm(self) -> None:
        scope, params = self.scope, self.scope.params()
        if scope.layer == "silver":
            self.client.command(query("rederive_delete_trades"), parameters={"table": "silver_trades", **params})
            self.client.command(query("rederive_delete_dead_letters"),
                                parameters={"not_from_bronze": list(NOT_FROM_BRONZE), **params})
            self.client.command(query("rederive_delete_gold"), parameters=params)
        elif scope.layer == "gold":
            if scope.source == "cold":
                self.client.command(query("rederive_delete_trades"), parameters={"table": "silver_trades", **params})
            self.client.command(query("rederive_delete_gold"), parameters=params)
        else:
            self.client.command(query("rederive_delete_trades"), parameters={"table": "bronze_trades", **params})

    # -- 3. delete the cold range ------------------------------------------------------------------
    def clear_cold(self) -> None:
        """Delete from cold what the offloader will copy again. A reload keeps stored_at: nothing to clear
        for the reloaded table itself (bronze, or silver under gold from cold)."""
        if self.cold is None or self.scope.layer == "bronze":
            return
        scope = self.scope
        ranges: list[tuple[str, BooleanExpression]] = []
        if scope.layer == "silver":
            ranges.append(("silver_trades", time_range("ts", scope.start, scope.end, scope.exchange, scope.symbol)))
            ranges.append(("dead_letters", time_range("ts", scope.start, scope.end, scope.exchange, scope.symbol,
                                                        rules_not_in=NOT_FROM_BRONZE)))
        bucket_range = time_range("bucket", scope.start, scope.end, scope.exchange, scope.symbol)
        ranges.extend((name, bucket_range) for name in CANDLE_TABLES)
        for name, row_filter in ranges:
            if self.cold.table(name) is not None:
                self.cold.delete(name, row_filter)
                self.report.cold_cleared.append(name)

    # -- 4. write the warm range -------------------------------------------------------------------
    def write(self, source: Counts) -> None:
        scope = self.scope
        if scope.layer == "gold" and scope.source == "warm":
            for day in scope.days:
                start = _midnight(day)
                self.client.command(query("rederive_gold"), parameters={
                    **scope.params(start, start + DAY), "timeframes": timeframe_seconds()})
            return
        for exchange, symbol, day in sorted(key for key, count in source.items() if count):
            rows = self._source_rows(exchange, symbol, day)
            for offset in range(0, rows.num_rows, CHUNK_ROWS):
                chunk = rows.slice(offset, CHUNK_ROWS)
                if scope.layer == "silver":
                    self._derive_silver(chunk)
                else:  # a reload from cold: silver (gold's source) or bronze, stored_at kept
                    self._insert("silver_trades" if scope.layer == "gold" else "bronze_trades", chunk)
            log.info("re-derived %s %s %s: %d source rows", exchange, symbol or "(unmapped)", day, rows.num_rows)

    def _source_rows(self, exchange: str, symbol: str, day: date) -> pa.Table:
        """One market-day of the source: bronze in the validator's layout, or the cold rows to reload."""
        start = _midnight(day)
        end = start + DAY
        if self.scope.layer == "silver" and self.scope.source == "warm":
            rows = self.client.query_arrow(query("rederive_bronze_trades"), parameters={
                "exchange": exchange, "symbol": symbol, "start": start, "end": end})
            return conform(rows, BRONZE_LAYOUT)
        assert self.cold is not None
        name = "silver_trades" if self.scope.layer == "gold" else "bronze_trades"
        table = self.cold.require(name)
        market = time_range("ts", start, end, exchange, symbol)
        if self.scope.layer == "silver":
            return _unique(conform(self.cold.scan(table, market, BRONZE_LAYOUT.names), BRONZE_LAYOUT))
        return _unique(for_warm(self.cold.scan(table, market)))

    def _derive_silver(self, chunk: pa.Table) -> None:
        """Validate with the current rules and insert: dead letters, then silver (the writer's order)."""
        passed: list[pa.Table] = []
        dead: list[tuple[Trade, Violation]] = []
        self._validate(chunk, passed, dead)
        if dead:
            payloads = self._payloads([trade for trade, _ in dead])
            self._insert("dead_letters", arrow.dead_letters([
                (trade, v.rule, v.detail, payloads.get((trade.conn_id, trade.frame_seq), "")) for trade, v in dead]))
        if passed:
            self._insert("silver_trades", pa.concat_tables(passed, promote_options="default"))

    def _validate(self, rows: pa.Table, passed: list[pa.Table], dead: list[tuple[Trade, Violation]]) -> None:
        """As the writer validates: a whole batch at once when every trade passes, else trade by trade
        (``Validator.check`` is the authority). Halving a failing batch first keeps the row-by-row checks
        to the parts that hold a failing trade: after a rule change, usually few."""
        decimals = self.validator.all_valid(rows)
        if decimals is not None:
            passed.append(arrow.with_decimals(rows, *decimals))
            return
        if rows.num_rows > ROW_BY_ROW:
            half = rows.num_rows // 2
            self._validate(rows.slice(0, half), passed, dead)
            self._validate(rows.slice(half), passed, dead)
            return
        valid: list[Trade] = []
        for trade in _trades(rows):
            violation = self.validator.check(trade)
            if violation is None:
                valid.append(trade)
            else:
                dead.append((trade, violation))
        if valid:
            passed.append(arrow.silver(valid))

    def _payloads(self, trades: Sequence[Trade]) -> dict[tuple[str, int], str]:
        """The raw frames these trades came in, for their dead letters: warm raw frames, else cold ones."""
        keys = sorted({(t.conn_id, t.frame_seq) for t in trades})
        low, high = min(t.received_us for t in trades), max(t.received_us for t in trades)
        rows = self.client.query(query("rederive_raw_payloads"), parameters={
            "low": utc_from_us(low), "high": utc_from_us(high), "frames": keys}).result_rows
        found = {(str(conn), int(seq)): str(payload) for conn, seq, payload in rows}
        missing = {key for key in keys if key not in found}
        cold = self.cold
        raw = cold.table("raw_frames") if missing and cold is not None else None
        if cold is not None and raw is not None:
            frames = cold.scan(raw, And(GreaterThanOrEqual(term="received_at", value=iso_us(low)),
                                        LessThanOrEqual(term="received_at", value=iso_us(high)),
                                        In(term="conn_id", literals=sorted({conn for conn, _ in missing}))),
                               ("conn_id", "frame_seq", "payload"))
            for conn, seq, payload in zip(*(frames.column(c).to_pylist() for c in frames.column_names), strict=True):
                if (conn, seq) in missing:
                    found[(conn, seq)] = payload
        return found

    def _insert(self, table: str, rows: pa.Table) -> None:
        # A new token per insert: a retried insert is stored once, and rows identical to ones a previous
        # run inserted (and this one deleted) are not taken for a retry and dropped by ClickHouse's
        # deduplication window.
        self._inserts += 1
        self.client.insert_arrow(table, rows, settings={
            "insert_deduplication_token": f"rederive-{self.run_id}-{self._inserts}"})
        self.report.written[table] = self.report.written.get(table, 0) + rows.num_rows

    # -- 5. check gold -----------------------------------------------------------------------------
    def mend_gold(self) -> int:
        """Recompute the windows whose trade count in gold differs from silver's (normally none: the view
        built them from exactly the rows written)."""
        mended = 0
        for day in self.scope.days:
            start = _midnight(day)
            rows = self.client.query(query("rederive_disagreeing_windows"), parameters={
                **self.scope.params(start, start + DAY), "timeframes": timeframe_seconds()}).result_rows
            windows = [(str(e), str(s), int(tf), gold.as_utc(bucket)) for e, s, tf, bucket, _, _ in rows]
            if windows:
                log.warning("%d gold windows of %s disagree with silver: recomputing them", len(windows), day)
                mended += gold.recompute(self.client, windows)
        return mended


def _sum(*counts: Counts) -> Counts:
    total: Counts = defaultdict(int)
    for one in counts:
        for key, count in one.items():
            total[key] += count
    return dict(total)


def rederive(client: Client, catalog: Catalog | None, namespace: str, scope: Scope, validation: ValidationSettings,
             *, dry_run: bool = False) -> RederiveReport:
    """Rebuild ``scope`` (see the module docstring). ``catalog`` None: there is no cold tier to keep in
    step (only allowed from warm). Raises RederiveError, before changing anything, when a check fails."""
    return Rederivation(client, catalog, namespace, scope, validation, dry_run).run()

