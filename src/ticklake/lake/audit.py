"""The cold tier audit: does the cold tier hold exactly what the warm tier holds, where both must?

**The overlap.** Per cold table, the rows both tiers must hold right now:

- stored_at tables (raw, bronze, silver, dead letters, bus dead letters): the rows stored in
  ``(lower, watermark]``. The watermark is the cold table's ``ticklake.watermark``: every warm row stored
  at or before it has been offloaded, and none after it (those are pending, not missing). ``lower`` is
  the warehouse's clock minus the table's retention (settings ``retention.*``; ClickHouse expires rows
  by ``stored_at`` and its own clock), plus a margin (:data:`MARGIN_S`, a quarter of the retention when
  that is shorter) so that no row expires while the audit runs. The cold tier keeps everything: its rows
  are filtered by the same ``stored_at`` bounds.
- candle tables: the windows that closed before the table's ``ticklake.closed_before``, whose candle
  changed (``updated_at``) after the warehouse's clock minus the gold retention (the warm TTL counts from
  ``updated_at``) plus the margin. A bucket where some warm candle changed after the cold table's
  watermark (a late trade, a repair) is pending rewrite by the next offload and left out on both sides.

**Counts and content.** Both sides are read in the cold table's Arrow schema: warm rows through the
offloader's own queries and cast (that of :func:`ticklake.lake.arrow_cast.to_lake`), cold rows from a scan of
the very snapshot whose properties gave the overlap (a concurrent offload or compaction changes nothing
the audit sees). Rows are grouped into partitions: day of the table's time
column x exchange (x topic for bus dead letters), month of the bucket x exchange for candles. Per
partition: the number of rows, and a checksum, the sum modulo 2**64 of a 64-bit hash of each row over
every column, exactly (decimals by their 128-bit value, timestamps by their microseconds, text by a
BLAKE2b digest of its bytes). A sum does not depend on row order, so both sides are streamed in batches
(memory stays bounded), and it changes with any value of any row, a row missing, or a row stored twice
(the copy adds its hash again). Different contents give equal checksums with probability 2**-64.
The hashes are checksums.py's; the cold scans cold_tables.py's.

**Duplicate keys** (the warm table's sorting key; exchange, symbol and bucket for candles) are looked for
in cold within each chunk the overlap is read in: rows stored up to ~:data:`CHUNK_ROWS` warm rows at a
time, cut at whole stored_at seconds, or one month of candles. A row offloaded twice, or appended twice,
keeps its stored_at and is always found. A key stored twice in the warm tier at different seconds (a
ReplacingMergeTree keeps both until a merge) and offloaded both times shows up as a count mismatch once
the warm tier has merged them, or as a duplicate if both copies fall in one chunk.

**Failing loudly.** Every partition whose counts, checksums or keys disagree is logged at ERROR, counted in
``ticklake_lake_audit_mismatched_partitions{table}``, recorded in the warehouse table ``lake_audits``
(:func:`record`) and makes ``ticklake audit`` exit 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, BooleanExpression, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual
from pyiceberg.table import Table

from ticklake.lake.arrow_cast import contiguous, regrouped, seconds_of, to_lake
from ticklake.lake.checksums import add_partition_sums, repeated_keys, row_hashes
from ticklake.lake.cold_tables import load_if_exists, scan_in_schema
from ticklake.lake.offload import closed_before, watermark
from ticklake.lake.results import AuditResult, PartitionAudit, audit_failed, count_audit, new_run_id
from ticklake.lake.tables import TABLES, LakeTable
from ticklake.lake.warm import WarmTier
from ticklake.settings import RetentionSettings, Settings
from ticklake.times import iso_seconds, iso_seconds_z, utc_from_seconds
from ticklake.warehouse.sql import query

log = logging.getLogger(__name__)

# Rows stored within this margin of expiring are left out: they could expire while the audit runs.
MARGIN_S = 3600
# The overlap of a stored_at table is read in chunks of about this many warm rows (whole seconds), as
# many as an offload commit reads: the warm side of a chunk holds the warehouse thread for that long.
# Memory: 16 bytes a warm row, 32 a cold one, plus one batch of each.
CHUNK_ROWS = 500_000
# Rows hashed at once: large enough that the per-column numpy calls cost nothing next to the work.
BATCH_ROWS = 262_144
_DAY_US = 86_400_000_000

# The warm tables' sorting keys: a key twice in cold is a duplicate, whatever the counts say.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw_frames": ("exchange", "received_at", "conn_id", "frame_seq"),
    "bronze_trades": ("exchange", "native_symbol", "trade_id"),
    "silver_trades": ("exchange", "symbol", "ts", "trade_id"),
    "dead_letters": ("exchange", "native_symbol", "trade_id", "rule"),
    "bus_dead_letters": ("topic", "partition", "offset"),
}
CANDLE_KEY = ("exchange", "symbol", "bucket")


def key_columns(spec: LakeTable) -> tuple[str, ...]:
    if spec.timeframe is not None:
        return CANDLE_KEY
    try:
        return KEY_COLUMNS[spec.name]
    except KeyError:
        raise ValueError(f"the audit does not know the key of cold table {spec.name!r}") from None


def group_column(spec: LakeTable) -> str:
    """What a partition is split by besides time: the venue, or the bus topic for bus dead letters."""
    return "topic" if spec.name == "bus_dead_letters" else "exchange"


def retention_s(spec: LakeTable, retention: RetentionSettings) -> int:
    """How long the warm tier keeps the table's rows (from stored_at; from updated_at for candles)."""
    day = 86_400
    if spec.timeframe is not None:
        return day * (retention.gold_1d_days if spec.timeframe == day else retention.gold_days)
    by_table = {
        "raw_frames": retention.raw_hours * 3600,
        "bronze_trades": retention.bronze_days * day,
        "silver_trades": retention.silver_days * day,
        "dead_letters": retention.dead_letter_days * day,
        "bus_dead_letters": retention.dead_letter_days * day,
    }
    try:
        return by_table[spec.name]
    except KeyError:
        raise ValueError(f"the audit does not know the warm retention of {spec.name!r}") from None


def overlap_start(now: int, retention: int) -> int:
    """The oldest second (exclusive) whose rows the warm tier surely still holds for the audit's duration."""
    return max(0, now - retention + min(MARGIN_S, retention // 4))


# --- partitions ----------------------------------------------------------------------------------------

_GROUP_BITS = 20


class _Partitions:
    """Partition codes stable across batches: (period << 20) | group index, and their labels."""

    def __init__(self, spec: LakeTable) -> None:
        self.spec = spec
        self.by_month = spec.timeframe is not None
        self.group = group_column(spec)
        self._groups: list[str] = []
        self._index: dict[str, int] = {}

    def codes(self, rows: pa.Table) -> np.ndarray:
        moment = contiguous(rows, self.spec.time_column)
        if self.by_month:
            period = (np.asarray(pc.year(moment), dtype=np.int64) * 12
                      + np.asarray(pc.month(moment), dtype=np.int64) - 1)
        else:
            period = np.floor_divide(np.asarray(moment.cast(pa.int64()), dtype=np.int64), _DAY_US)
        encoded = pc.dictionary_encode(contiguous(rows, self.group))
        mapping = np.array([self._group_index(str(value)) for value in encoded.dictionary.to_pylist()],
                           dtype=np.int64)
        groups = mapping[np.asarray(encoded.indices)] if len(mapping) else np.zeros(0, dtype=np.int64)
        return (period << _GROUP_BITS) | groups

    def _group_index(self, value: str) -> int:
        if value not in self._index:
            if len(self._groups) == 1 << _GROUP_BITS:
                raise ValueError(f"more than {1 << _GROUP_BITS} distinct {self.group} values in {self.spec.name}")
            self._index[value] = len(self._groups)
            self._groups.append(value)
        return self._index[value]

    def label(self, code: int) -> str:
        period, group = code >> _GROUP_BITS, code & ((1 << _GROUP_BITS) - 1)
        if self.by_month:
            when = f"{self.spec.time_column}_month={period // 12:04d}-{period % 12 + 1:02d}"
        else:
            when = f"{self.spec.time_column}_day={utc_from_seconds(period * 86_400):%Y-%m-%d}"
        return f"{when}/{self.group}={self._groups[group]}"


@dataclass
class _Side:
    """One tier's rows of a chunk, reduced to what the comparison needs: partition code and hashes."""

    codes: list[np.ndarray] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)
    key_a: list[np.ndarray] = field(default_factory=list)
    key_b: list[np.ndarray] = field(default_factory=list)
    buckets: list[np.ndarray] = field(default_factory=list)  # candles: bucket second, to leave pending ones out

    def add(self, codes: np.ndarray, hashes: tuple[np.ndarray, ...], buckets: np.ndarray | None) -> None:
        self.codes.append(codes)
        self.hashes.append(hashes[0])
        if len(hashes) == 3:
            self.key_a.append(hashes[1])
            self.key_b.append(hashes[2])
        if buckets is not None:
            self.buckets.append(buckets)

    def arrays(self, excluded_buckets: np.ndarray | None) -> tuple[np.ndarray, ...]:
        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        arrays = [joined(self.codes, np.int64), joined(self.hashes, np.uint64), joined(self.key_a, np.uint64),
                  joined(self.key_b, np.uint64)]
        if excluded_buckets is not None and len(excluded_buckets):
            keep = ~np.isin(joined(self.buckets, np.int64), excluded_buckets)
            arrays = [a[keep] if len(a) else a for a in arrays]
        return tuple(arrays)


@dataclass
class _Tally:
    """Per partition code: warm and cold counts and checksums, cold duplicate keys."""

    warm: dict[int, list[int]] = field(default_factory=dict)
    cold: dict[int, list[int]] = field(default_factory=dict)
    duplicates: dict[int, int] = field(default_factory=dict)

    def add_chunk(self, warm: _Side, cold: _Side, excluded_buckets: np.ndarray | None = None) -> None:
        codes, hashes, _, _ = warm.arrays(excluded_buckets)
        add_partition_sums(self.warm, codes, hashes)
        codes, hashes, key_a, key_b = cold.arrays(excluded_buckets)
        add_partition_sums(self.cold, codes, hashes)
        for code, count in repeated_keys(codes, key_a, key_b).items():
            self.duplicates[code] = self.duplicates.get(code, 0) + count

    def partitions(self, labels: _Partitions) -> tuple[PartitionAudit, ...]:
        found = []
        for code in sorted(set(self.warm) | set(self.cold) | set(self.duplicates)):
            warm, cold = self.warm.get(code, [0, 0]), self.cold.get(code, [0, 0])
            found.append(PartitionAudit(partition=labels.label(code), warm_count=warm[0], cold_count=cold[0],
                                        warm_checksum=warm[1], cold_checksum=cold[1],
                                        cold_duplicate_keys=self.duplicates.get(code, 0)))
        return tuple(sorted(found, key=lambda p: p.partition))


# --- reading both tiers ------------------------------------------------------------------------------

# Runs a piece of warm-tier work and returns its result. The default calls it in place; inside `ticklake
# up` a caller on a thread of its own can pass one that runs it on the embedded warehouse's one thread
# (and waits), so that ingestion goes on between chunks while the cold side reads and hashes elsewhere.
OnWarehouse = Callable[[Callable[[], Any]], Any]


def _in_place(work: Callable[[], Any]) -> Any:
    return work()


def _warm_tables(client: WarmTier, spec: LakeTable, parameters: Mapping[str, object]) -> Iterator[pa.Table]:
    """Warm rows from the offloader's select query, in the cold schema exactly as an offload writes them."""
    with client.query_arrow_stream(query(spec.select_query), parameters=dict(parameters)) as stream:
        for table in regrouped(stream, BATCH_ROWS):
            # Cast as an offload casts, without its sort: the checksums do not depend on order.
            yield to_lake(table, spec, sort=False).combine_chunks()


def _cold_tables(table: Table, spec: LakeTable, row_filter: BooleanExpression) -> Iterator[pa.Table]:
    """Cold rows of the loaded snapshot, in the table's Arrow schema, about BATCH_ROWS at a time."""
    return scan_in_schema(table, spec.arrow_schema, row_filter, BATCH_ROWS)


def _chunk_end(client: WarmTier, spec: LakeTable, start: int, upper: int) -> int:
    """Where the chunk starting after ``start`` ends: about CHUNK_ROWS warm rows on, at a whole second."""
    found = client.query(query("lake_stored_seconds"), parameters={
        "table": spec.name, "lower": start, "upper": upper, "max_rows": CHUNK_ROWS}).result_rows
    return int(found[0][0]) if found and found[0][0] else upper  # no warm row left: cold may still hold some


def _warm_stored(client: WarmTier, spec: LakeTable, start: int, end: int, labels: _Partitions) -> _Side:
    warm = _Side()
    for rows in _warm_tables(client, spec, {"lower": start, "upper": end}):
        warm.add(labels.codes(rows), row_hashes(rows), None)
    return warm


def _audit_stored(client: WarmTier, table: Table, spec: LakeTable, lower: int, upper: int, labels: _Partitions,
                  on_warehouse: OnWarehouse) -> _Tally:
    tally = _Tally()
    keys = key_columns(spec)
    start = lower
    while start < upper:
        # A chunk ends at a whole second, so rows stored in one second (a copy keeps its stored_at) share it.
        end: int = on_warehouse(partial(_chunk_end, client, spec, start, upper))
        warm: _Side = on_warehouse(partial(_warm_stored, client, spec, start, end, labels))
        cold = _Side()
        stored = And(GreaterThan(term="stored_at", value=iso_seconds(start)),
                     LessThanOrEqual(term="stored_at", value=iso_seconds(end)))
        for rows in _cold_tables(table, spec, stored):
            cold.add(labels.codes(rows), row_hashes(rows, keys), None)
        tally.add_chunk(warm, cold)
        start = end
    return tally


def _month_bounds(month: int) -> tuple[int, int]:
    """The first second of the month YYYYMM and of the next."""
    year, number = divmod(month, 100)
    following = (year + 1, 1) if number == 12 else (year, number + 1)
    return (int(datetime(year, number, 1, tzinfo=UTC).timestamp()),
            int(datetime(*following, 1, tzinfo=UTC).timestamp()))


def _warm_candle_plan(client: WarmTier, spec: LakeTable, updated_after: int, changed_after: int,
                      before: int) -> tuple[set[int], set[int]]:
    """The buckets pending rewrite, and the months (YYYYMM) with candles in the overlap."""
    parameters = {"timeframe": spec.timeframe, "closed_before": before}
    pending = {int(row[0]) for row in client.query(query("lake_audit_gold_pending"), parameters={
        **parameters, "changed_after": changed_after}).result_rows}
    months = {int(row[0]) for row in client.query(query("lake_audit_gold_months"), parameters={
        **parameters, "updated_after": updated_after}).result_rows}
    return pending, months


def _warm_candles(client: WarmTier, spec: LakeTable, start: int, end: int, updated_after: int, changed_after: int,
                  labels: _Partitions) -> tuple[_Side, set[int]]:
    """The warm candles of the windows in [start, end) changed after ``updated_after``, and the buckets
    holding a candle changed after ``changed_after`` (pending rewrite: since the plan, a late trade may
    have changed more)."""
    warm, pending = _Side(), set[int]()
    parameters = {"timeframe": spec.timeframe, "closed_from": start, "closed_before": end,
                  "changed_after": 2**32 - 1}  # only the windows in range, no late bucket before it
    for rows in _warm_tables(client, spec, parameters):
        updated = seconds_of(rows.column("updated_at"))
        pending.update(seconds_of(rows.column("bucket"))[updated > changed_after].tolist())
        rows = rows.filter(pa.array(updated > updated_after))
        if rows.num_rows:
            warm.add(labels.codes(rows), row_hashes(rows), seconds_of(rows.column("bucket")))
    return warm, pending


def _audit_candles(client: WarmTier, table: Table, spec: LakeTable, updated_after: int, changed_after: int,
                   before: int, labels: _Partitions, on_warehouse: OnWarehouse) -> tuple[_Tally, int]:
    """Month by month; returns the tally and how many buckets were left out as pending rewrite."""
    pending, months = on_warehouse(partial(_warm_candle_plan, client, spec, updated_after, changed_after, before))
    in_overlap = And(LessThan(term="bucket", value=iso_seconds(before)),
                     GreaterThan(term="updated_at", value=iso_seconds(updated_after)))
    for batch in table.scan(row_filter=in_overlap, selected_fields=("bucket",)).to_arrow_batch_reader():
        buckets = batch.column("bucket")  # the months cold holds candles in, which the warm tier may have lost
        months.update((np.asarray(pc.year(buckets)) * 100 + np.asarray(pc.month(buckets))).tolist())

    tally = _Tally()
    keys = key_columns(spec)
    for month in sorted(months):
        start, end = _month_bounds(month)
        end = min(end, before)
        warm, changed = on_warehouse(partial(_warm_candles, client, spec, start, end, updated_after, changed_after,
                                             labels))
        pending |= changed
        cold = _Side()
        window = And(GreaterThanOrEqual(term="bucket", value=iso_seconds(start)),
                     LessThan(term="bucket", value=iso_seconds(end)),
                     GreaterThan(term="updated_at", value=iso_seconds(updated_after)))
        for rows in _cold_tables(table, spec, window):
            cold.add(labels.codes(rows), row_hashes(rows, keys), seconds_of(rows.column("bucket")))
        tally.add_chunk(warm, cold, np.fromiter(pending, dtype=np.int64, count=len(pending)))
    return tally, len(pending)


# --- the audit -----------------------------------------------------------------------------------------


def warehouse_clock(client: WarmTier) -> int:
    return int(client.query(query("lake_audit_clock")).result_rows[0][0])


def audit_table(client: WarmTier, catalog: Catalog, namespace: str, spec: LakeTable, settings: Settings, *,
                run_id: str | None = None, on_warehouse: OnWarehouse = _in_place) -> AuditResult:
    """Compare one cold table with the warm tier over their overlap; log and count every mismatch.

    ``on_warehouse`` runs each piece of warm-tier work (a query, or reading and hashing one chunk's warm
    rows: about CHUNK_ROWS rows or one month of candles) and returns its result; everything else runs
    in the caller's thread."""
    started = time.monotonic()
    run_id = run_id or new_run_id()
    now: int = on_warehouse(partial(warehouse_clock, client))
    result = AuditResult(table=spec.name, run_id=run_id, checked_at=now)
    table = load_if_exists(catalog, namespace, spec.name)  # one snapshot: its properties and its rows
    lower = overlap_start(now, retention_s(spec, settings.retention))
    if table is None or watermark(table) == 0:
        result = replace(result, note="not offloaded yet")
    elif spec.timeframe is None:
        upper = watermark(table)
        if upper <= lower:
            result = replace(result, note="everything offloaded is older than the warm tier keeps "
                                          f"(watermark {iso_seconds_z(upper)})")
        else:
            labels = _Partitions(spec)
            tally = _audit_stored(client, table, spec, lower, upper, labels, on_warehouse)
            result = replace(result, overlap_from=lower, overlap_to=upper, partitions=tally.partitions(labels))
    else:
        before, changed_after = closed_before(table), watermark(table)
        labels = _Partitions(spec)
        tally, pending = _audit_candles(client, table, spec, lower, changed_after, before, labels, on_warehouse)
        result = replace(result, overlap_from=lower, overlap_to=changed_after, closed_before=before,
                         pending_buckets=pending, partitions=tally.partitions(labels))
    result = replace(result, seconds=time.monotonic() - started)

    for mismatch in result.mismatches:
        log.error("cold tier audit: %s %s differs from the warm tier: %s", spec.name, mismatch.partition,
                  mismatch.describe())
    log.info("cold tier audit: %s", result.summary())
    return result


def audit(client: WarmTier, catalog: Catalog, settings: Settings, tables: Sequence[LakeTable] | None = None, *,
          on_warehouse: OnWarehouse = _in_place) -> list[AuditResult]:
    """Audit every cold table (or those given) in one run. A table whose audit fails (catalog or object
    store unreachable) gets a result with the error, and the others are still audited."""
    run_id = new_run_id()
    results = []
    for spec in tables if tables is not None else TABLES.values():
        try:
            result = audit_table(client, catalog, settings.lake.namespace, spec, settings, run_id=run_id,
                                 on_warehouse=on_warehouse)
        except Exception as exc:
            log.exception("cold tier audit of %s failed", spec.name)
            result = audit_failed(spec.name, run_id, exc)
        count_audit(result)
        results.append(result)
    return results


def report(results: Sequence[AuditResult]) -> list[str]:
    """What ``ticklake audit`` prints: every mismatch, then one line per table."""
    lines = [f"MISMATCH {result.table} {p.partition}: {p.describe()}" for result in results
             for p in result.mismatches]
    return lines + [result.summary() for result in results]


def exit_code(results: Sequence[AuditResult]) -> int:
    return 0 if all(result.ok for result in results) else 1
