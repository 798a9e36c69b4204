"""The offloader's schedule: every cold table on its own clock, inside ``ticklake up`` or as the
``offload`` role, with no external orchestrator.

Each table is offloaded every ``lake.offload_interval_s`` (at most 15 minutes). A table whose run
fails (catalog or object store unreachable, a commit lost to a racing offloader) is retried with
exponential backoff from ``lake.retry_initial_s`` up to the interval; the other tables go on. The
lag of each table behind the warehouse's clock is a metric, and it keeps growing while a table
fails, which is what the alert rules watch.

Every ``lake.maintenance_interval_hours`` (daily) the same schedule maintains the tables (compaction,
snapshot expiry, orphan removal: maintain.py) and then audits them against the warm tier (audit.py),
recording the results in ``lake_audits``. When a table was last maintained is a table property
(``ticklake.maintained_at``), so a restart does not postpone it.

The warehouse work of a run (reading the rows) goes through the ``warehouse`` executor the platform
gives, because the embedded warehouse is used from one thread; the Iceberg work (writing files,
committing) runs on a thread of its own so that a slow object store never holds up ingestion.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from ticklake.lake import audit as audit_module
from ticklake.lake.maintain import MaintenanceResult, maintain_table
from ticklake.lake.offload import Batch, commit, offload_bound, prepare, prepare_candles
from ticklake.lake.tables import TABLES, LakeTable, ensure_table
from ticklake.ops import metrics
from ticklake.settings import Settings

log = logging.getLogger(__name__)

MAINTAINED_AT = "ticklake.maintained_at"


@dataclass
class TableState:
    """What the schedule knows of one cold table."""

    spec: LakeTable
    due: float = 0.0  # time.monotonic() of the next run
    failures: int = 0  # consecutive
    last_error: str = ""
    last_success: float = 0.0  # time.time()
    position: int = 0  # the bound of the last successful run: cold holds all it could by then; the lag counts from it
    rows: int = 0  # offloaded by this process
    commits: int = 0

    def health(self) -> dict[str, object]:
        return {"status": "ok" if not self.failures else "degraded", "lag_s": lag_seconds(self.position),
                "failures": self.failures, "last_error": self.last_error, "rows": self.rows}


def lag_seconds(position: int) -> float | None:
    return round(time.time() - position, 1) if position else None


def reason_of(exc: BaseException) -> str:
    """A short, bounded label for the failure metric."""
    if isinstance(exc, CommitFailedException):
        return "commit_conflict"  # another offloader (or maintenance) committed first: retried
    if isinstance(exc, OSError):
        return "io"
    return type(exc).__name__


@dataclass
class RunResult:
    table: str
    rows: int = 0
    commits: int = 0
    error: str = ""
    seconds: float = 0.0


@dataclass
class Offloader:
    """Runs the offload of each cold table when it is due. ``run_table`` is also what
    ``ticklake offload --once`` calls for every table."""

    settings: Settings
    client: Client
    open_catalog: Callable[[], Catalog]
    warehouse_executor: Executor | None = None  # None: the warehouse is used from the lake thread
    tables: Iterable[LakeTable] = field(default_factory=lambda: TABLES.values())
    states: dict[str, TableState] = field(init=False)

    def __post_init__(self) -> None:
        self.lake = self.settings.lake
        self.states = {spec.name: TableState(spec) for spec in self.tables}
        for name in self.states:  # the failure counts at zero from the start: a dashboard line, not "no data"
            for reason in ("commit_conflict", "io"):  # those reason_of names; another shows when it happens
                metrics.LAKE_OFFLOAD_FAILURES.labels(name, reason)
            metrics.LAKE_AUDIT_FAILURES.labels(name)
        self._catalog: Catalog | None = None
        self._lake_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake")
        self.last_audit: list[audit_module.AuditResult] = []
        self.last_maintenance: list[MaintenanceResult] = []

    # --- one run of one table --------------------------------------------------------------------
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = self.open_catalog()
        return self._catalog

    async def run_table(self, name: str) -> RunResult:
        """Offload one table up to now - safety lag, in one or more commits; never raises."""
        state = self.states[name]
        spec = state.spec
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        result = RunResult(name)
        try:
            table = await loop.run_in_executor(self._lake_executor, self._load, spec)
            bound = await loop.run_in_executor(self.warehouse_executor or self._lake_executor, offload_bound,
                                               self.client, self.lake.safety_lag_s)
            while True:
                # Late candle buckets are rewritten by the first commit of a run only, so that a run ends
                # even while late trades keep arriving (the next run takes them).
                batch = await loop.run_in_executor(self.warehouse_executor or self._lake_executor, self._prepare,
                                                   table, spec, bound, result.commits == 0)
                if batch is None:
                    break
                await loop.run_in_executor(self._lake_executor, commit, table, batch)
                result.rows += batch.rows.num_rows
                result.commits += 1
                metrics.LAKE_OFFLOADED_ROWS.labels(name).inc(batch.rows.num_rows)
                metrics.LAKE_OFFLOAD_COMMITS.labels(name).inc()
            # Everything that could be offloaded by ``bound`` is in cold now: the lag counts from there,
            # not from the newest row (a table with rare rows, dead letters, or closed candle windows
            # awaiting a quiet market's next trade, would look hours behind while nothing waits).
            state.position = bound
            state.failures, state.last_error, state.last_success = 0, "", time.time()
            state.rows += result.rows
            state.commits += result.commits
            metrics.LAKE_LAST_OFFLOAD.labels(name).set(state.last_success)
            if result.commits:
                log.info("offloaded %s: %d rows in %d commits", name, result.rows, result.commits)
        except Exception as exc:  # one table failing must not stop the others
            state.failures += 1
            state.last_error = result.error = f"{type(exc).__name__}: {exc}"[:500]
            metrics.LAKE_OFFLOAD_FAILURES.labels(name, reason_of(exc)).inc()
            log.warning("offload of %s failed (%d in a row): %s", name, state.failures, state.last_error)
            if not isinstance(exc, CommitFailedException):
                self._catalog = None  # reconnect next time: the catalog may have been the cause
        finally:
            result.seconds = time.monotonic() - started
            metrics.LAKE_OFFLOAD_SECONDS.labels(name).observe(result.seconds)
            if state.position:
                metrics.LAKE_OFFLOAD_LAG.labels(name).set(time.time() - state.position)
        return result

    def _load(self, spec: LakeTable) -> Table:
        return ensure_table(self.catalog(), self.lake.namespace, spec)

    def _prepare(self, table: Table, spec: LakeTable, bound: int, rewrite_late: bool) -> Batch | None:
        max_rows = self.lake.max_rows_per_commit
        if spec.timeframe is None:
            return prepare(self.client, table, spec, bound, max_rows)
        return prepare_candles(self.client, table, spec, bound, max_rows, rewrite_late=rewrite_late)

    # --- the schedule ----------------------------------------------------------------------------
    def next_delay(self, state: TableState) -> float:
        """Seconds until a table's next run: the interval after a success; after failures an
        exponential backoff with jitter, never longer than the interval."""
        interval = self.lake.offload_interval_s
        if not state.failures:
            return interval
        backoff = self.lake.retry_initial_s * 2 ** min(state.failures - 1, 16)
        return float(min(interval, backoff) * random.uniform(0.8, 1.0))

    async def run_forever(self) -> None:
        """Offload each table when due; a table's failure delays only that table. The first runs wait
        one safety lag: nothing newer can be offloaded, and a start stays quick."""
        first = time.monotonic() + min(self.lake.safety_lag_s, self.lake.offload_interval_s)
        for state in self.states.values():
            state.due = max(state.due, first)
        maintenance = asyncio.create_task(self.maintain_forever(), name="lake-maintenance")
        try:
            while True:
                now = time.monotonic()
                for state in self.states.values():
                    if state.due <= now:
                        await self.run_table(state.spec.name)
                        state.due = time.monotonic() + self.next_delay(state)
                    elif state.position:
                        metrics.LAKE_OFFLOAD_LAG.labels(state.spec.name).set(time.time() - state.position)
                wake = min(state.due for state in self.states.values())
                await asyncio.sleep(max(0.05, min(wake - time.monotonic(), 5.0)))
        finally:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)

    async def run_once(self) -> list[RunResult]:
        """Every table once, in order (``ticklake offload --once``)."""
        return [await self.run_table(name) for name in self.states]

    # --- maintenance and audit ------------------------------------------------------------------
    async def maintain_and_audit(self) -> tuple[list[MaintenanceResult], list[audit_module.AuditResult]]:
        """Maintain every table, then audit every table against the warm tier and record the results.
        Never raises: failures are in the results, the logs and the metrics."""
        loop = asyncio.get_running_loop()
        maintained = []
        for state in self.states.values():
            result = await loop.run_in_executor(self._lake_executor, self._maintain, state.spec)
            maintained.append(result)
        audited = []
        run_id = audit_module.new_run_id()
        for state in self.states.values():
            audited.append(await loop.run_in_executor(self._lake_executor, self._audit, state.spec, run_id))
        try:
            await loop.run_in_executor(self.warehouse_executor or self._lake_executor, audit_module.record,
                                       self.client, audited)
        except Exception:
            log.exception("could not record the audit results in lake_audits")
        self.last_maintenance, self.last_audit = maintained, audited
        return maintained, audited

    def _maintain(self, spec: LakeTable) -> MaintenanceResult:
        result = maintain_table(self.catalog(), self.lake.namespace, spec, self.lake)
        if result.ok and not result.missing:
            try:
                table = self.catalog().load_table((self.lake.namespace, spec.name))
                with table.transaction() as tx:
                    tx.set_properties({MAINTAINED_AT: str(int(time.time()))})
            except Exception as exc:  # an offload committed meanwhile: the next check runs it again
                log.info("could not mark %s maintained (%s)", spec.name, exc)
        return result

    def _on_warehouse(self, work: Callable[[], object]) -> object:
        """Run ``work`` on the warehouse thread and wait for it (called from the lake thread): the
        audit's warm reads go there one chunk at a time, so ingestion goes on between them."""
        if self.warehouse_executor is None:
            return work()
        return self.warehouse_executor.submit(work).result()

    def _audit(self, spec: LakeTable, run_id: str) -> audit_module.AuditResult:
        try:
            return audit_module.audit_table(self.client, self.catalog(), self.lake.namespace, spec, self.settings,
                                            run_id=run_id, on_warehouse=self._on_warehouse)
        except Exception as exc:
            log.exception("cold tier audit of %s failed", spec.name)
            metrics.LAKE_AUDIT_FAILURES.labels(spec.name).inc()
            return audit_module.AuditResult(table=spec.name, run_id=run_id, checked_at=int(time.time()),
                                            error=f"{type(exc).__name__}: {exc}")

    def _last_maintained(self) -> float:
        """The oldest ``maintained_at`` of the tables that exist (0: one never was)."""
        oldest = time.time()
        for spec in self.tables:
            try:
                table = self.catalog().load_table((self.lake.namespace, spec.name))
            except Exception:
                continue  # not created yet: nothing to maintain
            oldest = min(oldest, float(table.properties.get(MAINTAINED_AT, "0")))
        return oldest

    async def maintain_forever(self) -> None:
        """Maintenance and audit every ``lake.maintenance_interval_hours``, counted from the last run
        recorded in the tables; a first run one offload interval after the start when none is."""
        loop = asyncio.get_running_loop()
        interval = self.lake.maintenance_interval_hours * 3600
        await asyncio.sleep(self.lake.offload_interval_s)  # let the first offloads go first
        while True:
            try:
                last = await loop.run_in_executor(self._lake_executor, self._last_maintained)
            except Exception as exc:
                log.warning("cannot read when the cold tier was last maintained: %s", exc)
                last = time.time() - interval + self.lake.offload_interval_s  # ask again later
            wait = last + interval - time.time()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600))  # re-read: another offloader may have maintained
                continue
            maintained, audited = await self.maintain_and_audit()
            failed = [r.table for r in maintained if not r.ok] + [r.table for r in audited if not r.ok]
            log.log(logging.ERROR if failed else logging.INFO, "cold tier maintenance and audit done%s",
                    f"; failed or mismatched: {', '.join(failed)}" if failed else ": every table ok")

    def health(self) -> dict[str, object]:
        tables = {name: state.health() for name, state in self.states.items()}
        failing = [name for name, state in self.states.items() if state.failures]
        mismatched = [result.table for result in self.last_audit if not result.ok]
        health: dict[str, object] = {"status": "degraded" if failing or mismatched else "ok", "failing": failing,
                                     "tables": tables}
        if self.last_audit:
            health["audit_mismatches"] = mismatched
        return health

    def close(self) -> None:
        self._lake_executor.shutdown(wait=True)  # a commit in flight completes (or fails) before exit
