"""Daily maintenance of the cold tier: compaction, snapshot expiry, orphan-file removal.

Every offload commit adds small data files (one per partition it touches), a manifest, a manifest list
and a metadata file; pyiceberg compacts nothing and deletes nothing, and planning a scan reads every
manifest (after 150 commits planning was 20x slower, stack.md). Each table is maintained on its own,
in three steps:

**Compaction.** In each partition, the data files smaller than ``lake.compaction_target_file_mb`` are
packed into groups of about that size; a group of two or more files is read, sorted by the table's
sort keys (pyiceberg does not sort on write) and written again as new files. All groups of a table are
swapped in ONE ``OVERWRITE`` snapshot that deletes exactly the files read and adds the rewritten ones
(explicit files, no row filter). Rows are preserved exactly: the rewritten files must hold as many
rows as the files they replace, or nothing is committed. Table properties (the offload watermarks)
are not touched.

*Against a concurrent offload*: the transaction starts from the snapshot whose files were read, and
its commit requires the branch head to still be that snapshot; tables have
``commit.retry.num-retries=0``, so if an offload committed in between, the compaction's commit fails
(``CommitFailedException``) instead of being re-applied: the rewritten files are deleted and the
compaction is skipped until the next run. The offload's rows are in files the compaction never read
or deleted, so nothing is lost or duplicated either way. (Even a retried commit would be safe: it
deletes named files, and pyiceberg refuses one whose files are no longer live; candles rewritten by
a late-bucket offload are such a case.) Files with row-level delete files (which pyiceberg never
writes) are left alone.

**Snapshot expiry.** Snapshots older than ``lake.snapshot_retention_days`` are removed from the
metadata, except the ``lake.min_snapshots`` newest and branch or tag heads. pyiceberg deletes no file
when it expires a snapshot: the files only the expired snapshots used become orphans.

**Orphan-file removal.** A file under the table's data or metadata folder that no live metadata
references (the current metadata file and its metadata log; every remaining snapshot's manifest list,
manifests and the live data and delete files they list; statistics files) is deleted once it is
older than ``lake.orphan_min_age_hours``. The age is what protects a commit in flight: its files are
written before the catalog points at them, so they look like orphans for a moment (the minimum is 1 h).
Listing and deleting go through :func:`list_files` and :func:`delete_files`, for local (file://) and
object-store (s3://) warehouses alike.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyarrow.fs import FileSelector, FileSystem, FileType
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import ArrowScan, PyArrowFileIO, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.table.metadata import TableMetadata

from ticklake.lake.arrow_cast import sorted_for
from ticklake.lake.cold_tables import load_if_exists
from ticklake.lake.results import MaintenanceResult, count_maintenance
from ticklake.lake.tables import TABLES, LakeTable
from ticklake.settings import LakeSettings

log = logging.getLogger(__name__)

# Written into the compaction snapshot's summary, so that a reader of the history can tell it apart.
COMPACTION_SUMMARY = {"ticklake.maintenance": "compaction"}
# Rows per Parquet row group in compacted files, unless the table sets write.parquet.row-group-limit.
# pyiceberg's default (1,048,576) makes a compacted day one row group per million rows, read whole by
# a query for one market and hour: measured on 1M silver trades (20 markets, one day), such a scan took
# ~190 ms after compaction with the default and 40-55 ms with 131,072 (45-55 ms on the 20 files before).
COMPACTION_ROW_GROUP_LIMIT = 131_072


@dataclass(frozen=True)
class CompactionResult:
    files_before: int  # data files in the current snapshot before
    files_after: int
    files_rewritten: int  # small files replaced
    files_written: int  # the files that replaced them
    rows_rewritten: int
    skipped: bool = False  # lost a race with another commit: nothing changed, the next run retries


@dataclass(frozen=True)
class StoredFile:
    location: str  # as pyarrow's filesystem names it (see _fs_path)
    mtime: float  # Unix seconds


# --- compaction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactionPlan:
    data_files: int  # in the snapshot planned from
    groups: list[list[FileScanTask]]  # the files to rewrite together, group by group


def plan_compaction(table: Table, target_bytes: int) -> CompactionPlan:
    """Groups of data files of the current snapshot to rewrite together: per partition, the files
    smaller than ``target_bytes``, packed into groups of at most about ``target_bytes``; only groups of
    two or more files (a single file is already sorted: rewriting it would gain nothing)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return CompactionPlan(data_files=0, groups=[])
    data_files = 0
    small: dict[tuple[int, object], list[FileScanTask]] = defaultdict(list)
    for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
        data_files += 1
        if task.file.file_size_in_bytes < target_bytes and not task.delete_files:
            small[(task.file.spec_id, task.file.partition)].append(task)
    groups: list[list[FileScanTask]] = []
    for tasks in small.values():
        if len(tasks) < 2:
            continue
        tasks.sort(key=lambda task: task.file.file_size_in_bytes)
        group: list[FileScanTask] = []
        size = 0
        for task in tasks:
            if group and size + task.file.file_size_in_bytes > target_bytes:
                groups.append(group)
                group, size = [], 0
            group.append(task)
            size += task.file.file_size_in_bytes
        groups.append(group)
    return CompactionPlan(data_files=data_files, groups=[group for group in groups if len(group) > 1])


def _write_metadata(table: Table) -> TableMetadata:
    """The metadata compaction writes with: the table's, with row groups of COMPACTION_ROW_GROUP_LIMIT
    rows unless the table sets its own limit."""
    if TableProperties.PARQUET_ROW_GROUP_LIMIT in table.properties:
        return table.metadata
    properties = {**table.properties, TableProperties.PARQUET_ROW_GROUP_LIMIT: str(COMPACTION_ROW_GROUP_LIMIT)}
    return table.metadata.model_copy(update={"properties": properties})


@dataclass
class Rewrite:
    """Files written to replace others, not committed yet (see :func:`rewrite` and :func:`commit_rewrite`)."""

    commit_uuid: uuid.UUID
    replaced: list[DataFile]
    written: list[DataFile]
    rows: int


def rewrite(table: Table, spec: LakeTable, groups: Sequence[Sequence[FileScanTask]]) -> Rewrite:
    """Read each group, sort it, and write it again as new data files (not yet part of the table).
    Raises if a group's rewritten files do not hold exactly its rows; then nothing may be committed."""
    commit_uuid = uuid.uuid4()
    counter = itertools.count(0)
    metadata = _write_metadata(table)
    done = Rewrite(commit_uuid=commit_uuid, replaced=[], written=[], rows=0)
    try:
        for group in groups:
            expected = sum(task.file.record_count for task in group)
            rows = ArrowScan(table_metadata=table.metadata, io=table.io, projected_schema=table.schema(),
                             row_filter=AlwaysTrue()).to_table(tasks=group)
            read = rows.num_rows
            rows = sorted_for(rows, spec)  # reassigned: the unsorted copy is freed before writing
            written = list(_dataframe_to_data_files(table_metadata=metadata, df=rows, io=table.io,
                                                    write_uuid=commit_uuid, counter=counter))
            del rows
            done.written.extend(written)
            rewritten = sum(data_file.record_count for data_file in written)
            if not read == rewritten == expected:
                raise RuntimeError(f"{spec.name}: compaction read {read} rows from files that list {expected} "
                                   f"and wrote {rewritten}; nothing committed")
            done.replaced.extend(task.file for task in group)
            done.rows += rewritten
    except BaseException:
        _discard(table.io, done.written)
        raise
    return done


def commit_rewrite(table: Table, done: Rewrite) -> None:
    """Swap the replaced files for the rewritten ones in one OVERWRITE snapshot. ``table`` must be the
    Table the files were planned and read from, unrefreshed: the commit then requires the branch head
    to be that snapshot and fails with CommitFailedException if anything committed since."""
    if table.properties.get("commit.retry.num-retries") != "0":
        raise RuntimeError(f"{table.name()} must have commit.retry.num-retries=0 (see ticklake.lake.maintain)")
    with table.transaction() as tx, tx.update_snapshot(snapshot_properties=COMPACTION_SUMMARY).overwrite(
            commit_uuid=done.commit_uuid) as swap:
        for data_file in done.replaced:
            swap.delete_data_file(data_file)
        for data_file in done.written:
            swap.append_data_file(data_file)


def compact(table: Table, spec: LakeTable, target_bytes: int) -> CompactionResult:
    """Rewrite each partition's small files into sorted files of about ``target_bytes`` (module docstring).
    A commit that loses a race is reported as skipped; its files are deleted again."""
    plan = plan_compaction(table, target_bytes)
    before = plan.data_files
    if not plan.groups:
        return CompactionResult(files_before=before, files_after=before, files_rewritten=0, files_written=0,
                                rows_rewritten=0)
    done = rewrite(table, spec, plan.groups)
    try:
        commit_rewrite(table, done)
    except (CommitFailedException, ValidationException) as exc:
        # Both guarantee the commit did not land: the written files are referenced by nothing.
        _discard(table.io, done.written)
        log.info("compaction of %s skipped, another commit came first (retried next run): %s", spec.name, exc)
        return CompactionResult(files_before=before, files_after=before, files_rewritten=0, files_written=0,
                                rows_rewritten=0, skipped=True)
    after = before - len(done.replaced) + len(done.written)
    log.info("compacted %s: %d small files into %d (%d rows), %d data files now", spec.name, len(done.replaced),
             len(done.written), done.rows, after)
    return CompactionResult(files_before=before, files_after=after, files_rewritten=len(done.replaced),
                            files_written=len(done.written), rows_rewritten=done.rows)


def _discard(io: FileIO, written: Iterable[DataFile]) -> None:
    """Best effort: files left behind are orphans, which orphan removal deletes later."""
    for data_file in written:
        try:
            io.delete(data_file.file_path)
        except OSError:
            log.warning("could not delete the uncommitted file %s (left to orphan removal)", data_file.file_path)


# --- snapshot expiry -----------------------------------------------------------------------------


def expire_snapshots(table: Table, *, retention_days: float, min_snapshots: int, now: float | None = None) -> int:
    """Remove from the metadata the snapshots older than ``retention_days``, except the ``min_snapshots``
    newest and branch or tag heads. Deletes no file. Returns how many snapshots were expired."""
    if min_snapshots < 1:
        raise ValueError("min_snapshots must be at least 1")
    cutoff_ms = ((time.time() if now is None else now) - retention_days * 86_400) * 1000
    # Commit order: the sequence number (format v2); writers' clocks may disagree.
    newest_first = sorted(table.metadata.snapshots, key=lambda snapshot: (snapshot.sequence_number or 0,
                                                                          snapshot.timestamp_ms), reverse=True)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    expired = [snapshot.snapshot_id for snapshot in newest_first[min_snapshots:]
               if snapshot.timestamp_ms < cutoff_ms and snapshot.snapshot_id not in protected]
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        log.info("expired %d snapshots of %s", len(expired), table.name()[-1])
    return len(expired)


# --- orphan files --------------------------------------------------------------------------------


def _file_io(io: FileIO) -> PyArrowFileIO:
    # Listing needs a pyarrow filesystem; another FileIO's properties (endpoint, keys) configure one.
    return io if isinstance(io, PyArrowFileIO) else PyArrowFileIO(io.properties)


def _fs_path(io: PyArrowFileIO, location: str) -> tuple[FileSystem, str]:
    """The filesystem holding ``location`` and its path there: a local path for file://, bucket/key for s3://."""
    scheme, netloc, path = PyArrowFileIO.parse_location(location, io.properties)
    return io.fs_by_scheme(scheme, netloc), path


def list_files(io: FileIO, folder: str) -> list[StoredFile]:
    """Every file under ``folder`` (a URI: file://… or s3://bucket/prefix), recursively; an absent folder
    is empty. Directories and the directory markers of object stores (keys ending in /) are not files."""
    fs, path = _fs_path(_file_io(io), folder)
    infos = fs.get_file_info(FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
    return [StoredFile(location=info.path, mtime=info.mtime.timestamp())
            for info in infos if info.type == FileType.File and not info.path.endswith("/") and info.mtime]


def delete_files(io: FileIO, folder: str, paths: Iterable[str]) -> int:
    """Delete files named as :func:`list_files` names them under ``folder``; returns how many were deleted
    (one already gone, say by a concurrent run, is not counted). Files only: on an object store, pyarrow
    deletes objects fine but refuses directory markers, which list_files never returns."""
    fs, _ = _fs_path(_file_io(io), folder)
    deleted = 0
    for path in paths:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            continue
        deleted += 1
    return deleted


def live_files(table: Table) -> set[str]:
    """Every location the table's current metadata references, as URIs (see the module docstring)."""
    metadata = table.metadata
    live = {table.metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    live.update(stats.statistics_path for stats in metadata.statistics)
    live.update(stats.statistics_path for stats in metadata.partition_statistics)
    manifests_read: set[str] = set()
    for snapshot in metadata.snapshots:
        live.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            live.add(manifest.manifest_path)
            if manifest.manifest_path in manifests_read:  # snapshots share most of their manifests
                continue
            manifests_read.add(manifest.manifest_path)
            # Live entries only: a file a snapshot deleted is listed live by its parent while that exists.
            live.update(entry.data_file.file_path for entry in manifest.fetch_manifest_entry(table.io))
    return live


def find_orphans(table: Table, *, min_age_hours: float, now: float | None = None) -> list[str]:
    """Files under the table's data and metadata folders that nothing live references and that are
    older than ``min_age_hours`` (pyarrow filesystem paths)."""
    if min_age_hours < 1:
        raise ValueError("min_age_hours must be at least 1: a commit in flight has files nothing references yet")
    io = _file_io(table.io)
    live = {_fs_path(io, location)[1] for location in live_files(table)}
    cutoff = (time.time() if now is None else now) - min_age_hours * 3600
    locations = table.location_provider()
    orphans: list[str] = []
    for folder in dict.fromkeys((locations.data_path, locations.metadata_path)):
        orphans.extend(stored.location for stored in list_files(io, folder)
                       if stored.location not in live and stored.mtime < cutoff
                       # A file-system catalog's pointer to the current metadata: referenced by name only.
                       and not stored.location.endswith("/version-hint.text"))
    return orphans


def remove_orphans(table: Table, *, min_age_hours: float, now: float | None = None) -> int:
    """Delete the table's orphan files (:func:`find_orphans`); returns how many."""
    orphans = find_orphans(table, min_age_hours=min_age_hours, now=now)
    if not orphans:
        return 0
    removed = delete_files(table.io, table.location(), orphans)
    log.info("removed %d orphan files of %s", removed, table.name()[-1])
    return removed


# --- a table, every table ------------------------------------------------------------------------


def maintain_table(catalog: Catalog, namespace: str, spec: LakeTable, settings: LakeSettings,
                   now: float | None = None) -> MaintenanceResult:
    """Compact, expire snapshots, remove orphan files; never raises (the error is in the result).
    ``now`` (Unix seconds) stands for the clock in expiry and orphan ages: tests move it forward."""
    started = time.monotonic()
    compaction: CompactionResult | None = None
    expired = removed = 0
    try:
        table = load_if_exists(catalog, namespace, spec.name)
        if table is None:
            return MaintenanceResult(table=spec.name, missing=True, seconds=time.monotonic() - started)
        compaction = compact(table, spec, settings.compaction_target_file_mb * 1024 * 1024)
        table = catalog.load_table((namespace, spec.name))
        expired = expire_snapshots(table, retention_days=settings.snapshot_retention_days,
                                   min_snapshots=settings.min_snapshots, now=now)
        # Reloaded: orphans are judged against the metadata as it is now, expired snapshots gone.
        table = catalog.load_table((namespace, spec.name))
        removed = remove_orphans(table, min_age_hours=settings.orphan_min_age_hours, now=now)
        error = None
    except Exception as exc:
        log.exception("maintenance of %s failed", spec.name)
        error = f"{type(exc).__name__}: {exc}"
    result = MaintenanceResult(
        table=spec.name,
        files_before=compaction.files_before if compaction else 0,
        files_after=compaction.files_after if compaction else 0,
        files_rewritten=compaction.files_rewritten if compaction else 0,
        snapshots_expired=expired, orphans_removed=removed, seconds=time.monotonic() - started,
        compaction_skipped=bool(compaction and compaction.skipped), error=error,
    )
    return result


def maintain(catalog: Catalog, settings: LakeSettings, tables: Iterable[str] | None = None,
             now: float | None = None) -> list[MaintenanceResult]:
    """Maintain every cold table (or those named), each on its own: one failing does not stop the others."""
    names = list(TABLES) if tables is None else list(tables)
    unknown = [name for name in names if name not in TABLES]
    if unknown:
        raise ValueError(f"unknown cold tables: {', '.join(unknown)} (known: {', '.join(TABLES)})")
    results = [maintain_table(catalog, settings.namespace, TABLES[name], settings, now=now) for name in names]
    for result in results:
        count_maintenance(result)
    return results
