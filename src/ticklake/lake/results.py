"""What the cold tier's jobs report (an offload run, a table's maintenance, its audit), and what the
platform does with a report: its metrics, and the audit's rows in ``lake_audits``.

Plain values with no Iceberg in them: a job may run in the cold-tier worker process (worker.py) and
its report comes back pickled to the platform process, which never imports pyiceberg.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ticklake.ops import metrics
from ticklake.times import iso_seconds_z, utc_from_seconds


@dataclass(frozen=True)
class OffloadRun:
    """One run of one table's offload: everything stored up to ``bound`` is in cold when no error."""

    table: str
    rows: int = 0
    commits: int = 0
    bound: int = 0  # the stored_at second the run offloaded up to (0: the run failed before reading it)
    seconds: float = 0.0
    error: str = ""
    reason: str = ""  # a short, bounded label for the failure metric ("commit_conflict", "io", a type name)


@dataclass(frozen=True)
class MaintenanceResult:
    table: str
    files_before: int = 0
    files_after: int = 0
    files_rewritten: int = 0
    snapshots_expired: int = 0
    orphans_removed: int = 0
    seconds: float = 0.0
    compaction_skipped: bool = False  # a concurrent commit won: compaction is retried at the next run
    missing: bool = False  # the table does not exist yet (never offloaded): nothing to do
    error: str | None = None  # what failed; the remaining steps of this table were not run

    @property
    def ok(self) -> bool:
        return self.error is None


def count_maintenance(result: MaintenanceResult) -> None:
    """The metrics of one table's maintenance."""
    outcome = "failed" if result.error else "skipped" if result.compaction_skipped else "ok"
    metrics.LAKE_MAINTENANCE_RUNS.labels(result.table, outcome).inc()
    metrics.LAKE_MAINTENANCE_SECONDS.labels(result.table).observe(result.seconds)
    metrics.LAKE_FILES_COMPACTED.labels(result.table).inc(result.files_rewritten)
    metrics.LAKE_SNAPSHOTS_EXPIRED.labels(result.table).inc(result.snapshots_expired)
    metrics.LAKE_ORPHANS_REMOVED.labels(result.table).inc(result.orphans_removed)
    if result.error is None:
        metrics.LAKE_DATA_FILES.labels(result.table).set(result.files_after)
        metrics.LAKE_LAST_MAINTENANCE.labels(result.table).set(time.time())


def new_run_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PartitionAudit:
    """One partition of one cold table, warm against cold over the overlap."""

    partition: str  # e.g. "ts_day=2026-01-01/exchange=binance", "bucket_month=2026-01/exchange=kraken"
    warm_count: int
    cold_count: int
    warm_checksum: int  # sum of the row hashes, modulo 2**64
    cold_checksum: int
    cold_duplicate_keys: int = 0  # cold rows repeating the key of an earlier one (in the same chunk)

    @property
    def ok(self) -> bool:
        return (self.warm_count == self.cold_count and self.warm_checksum == self.cold_checksum
                and self.cold_duplicate_keys == 0)

    def describe(self) -> str:
        text = f"warm {self.warm_count} rows, cold {self.cold_count} rows"
        if self.warm_checksum != self.cold_checksum:
            text += f", checksums differ (warm {self.warm_checksum:016x}, cold {self.cold_checksum:016x})"
        if self.cold_duplicate_keys:
            text += f", {self.cold_duplicate_keys} duplicate keys in cold"
        return text


@dataclass(frozen=True)
class AuditResult:
    """The audit of one cold table in one run."""

    table: str
    run_id: str
    checked_at: int  # Unix seconds, the warehouse's clock
    overlap_from: int = 0  # stored_at (updated_at for candles) in (overlap_from, overlap_to]
    overlap_to: int = 0  # the cold table's watermark
    closed_before: int = 0  # candles: windows starting before this second
    pending_buckets: int = 0  # candles: buckets changed after the watermark, left out
    partitions: tuple[PartitionAudit, ...] = ()
    seconds: float = 0.0
    note: str = ""  # why nothing was compared, when nothing was
    error: str = ""  # the audit of this table failed (the table is not known to be equal)

    @property
    def mismatches(self) -> list[PartitionAudit]:
        return [p for p in self.partitions if not p.ok]

    @property
    def ok(self) -> bool:
        return not self.error and not self.mismatches

    @property
    def warm_rows(self) -> int:
        return sum(p.warm_count for p in self.partitions)

    @property
    def cold_rows(self) -> int:
        return sum(p.cold_count for p in self.partitions)

    def summary(self) -> str:
        if self.error:
            return f"{self.table}: ERROR {self.error}"
        if self.note:
            return f"{self.table}: ok, nothing to compare ({self.note})"
        verdict = "ok" if self.ok else f"MISMATCH in {len(self.mismatches)} of"
        overlap = f"{'updated_at' if self.closed_before else 'stored_at'} in ({iso_seconds_z(self.overlap_from)}, " \
                  f"{iso_seconds_z(self.overlap_to)}]"
        if self.closed_before:
            overlap = (f"windows before {iso_seconds_z(self.closed_before)}, {overlap}, {self.pending_buckets} "
                       "buckets pending rewrite")
        return (f"{self.table}: {verdict} {len(self.partitions)} partitions, warm {self.warm_rows} rows, "
                f"cold {self.cold_rows} rows ({overlap}; {self.seconds:.1f} s)")


def audit_failed(table: str, run_id: str, exc: BaseException) -> AuditResult:
    """The result of an audit that could not run (catalog or object store unreachable)."""
    return AuditResult(table=table, run_id=run_id, checked_at=int(time.time()), error=f"{type(exc).__name__}: {exc}")


def count_audit(result: AuditResult) -> None:
    """The metrics of one table's audit."""
    if result.error:
        metrics.LAKE_AUDIT_FAILURES.labels(result.table).inc()
        return
    metrics.LAKE_AUDIT_MISMATCHED.labels(result.table).set(len(result.mismatches))
    metrics.LAKE_AUDIT_ROWS.labels(result.table).set(result.warm_rows)
    metrics.LAKE_AUDIT_LAST_RUN.labels(result.table).set(time.time())


class Inserts(Protocol):
    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str]) -> Any: ...


_RECORD_COLUMNS = ("run_id", "checked_at", "table", "partition", "status", "warm_count", "cold_count",
                   "cold_duplicate_keys", "warm_checksum", "cold_checksum", "overlap_from", "overlap_to",
                   "closed_before", "detail")


def record(client: Inserts, results: Sequence[AuditResult]) -> int:
    """Store the results in ``lake_audits``: a row per partition compared, a row per table that failed.
    Returns the number of rows stored."""
    rows: list[list[object]] = []
    at = utc_from_seconds
    for result in results:
        common = [result.run_id, at(result.checked_at), result.table]
        bounds = [at(result.overlap_from), at(result.overlap_to), at(result.closed_before)]
        if result.error:
            rows.append([*common, "", "error", 0, 0, 0, 0, 0, *bounds, result.error])
        for p in result.partitions:
            rows.append([*common, p.partition, "ok" if p.ok else "mismatch", p.warm_count, p.cold_count,
                         p.cold_duplicate_keys, p.warm_checksum, p.cold_checksum, *bounds,
                         "" if p.ok else p.describe()])
    if rows:
        client.insert("lake_audits", rows, column_names=list(_RECORD_COLUMNS))
    return len(rows)
