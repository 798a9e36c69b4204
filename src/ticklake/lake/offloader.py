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

The jobs themselves (work.py) run in a cold-tier worker (worker.py): by default a short-lived process
of its own, so that their memory never stays in the platform process, which schedules them by name
and never imports pyiceberg. Their warehouse reads go through the ``warehouse`` executor the platform
gives, because the embedded warehouse is used from one thread; the jobs are waited for on a lake
thread of their own, so that a slow object store never holds up ingestion.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from clickhouse_connect.driver.client import Client

from ticklake.lake.names import COLD_TABLES
from ticklake.lake.results import (
    AuditResult,
    MaintenanceResult,
    OffloadRun,
    count_audit,
    count_maintenance,
    new_run_id,
    record,
)
from ticklake.lake.worker import ColdWorker, OpenCatalog, make_worker
from ticklake.ops import metrics
from ticklake.settings import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

@dataclass
class TableState:
    """What the schedule knows of one cold table."""

    name: str
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


@dataclass
class Offloader:
    """Runs the offload of each cold table when it is due. ``run_table`` is also what
    ``ticklake offload --once`` calls for every table."""

    settings: Settings
    client: Client
    open_catalog: OpenCatalog
    warehouse_executor: Executor | None = None  # None: the warehouse is used from the lake thread
    tables: Sequence[str] = COLD_TABLES
    worker_kind: Literal["process", "thread"] = "thread"  # the platform passes settings.lake.worker
    states: dict[str, TableState] = field(init=False)

    def __post_init__(self) -> None:
        self.lake = self.settings.lake
        self.states = {name: TableState(name) for name in self.tables}
        for name in self.states:  # the failure counts at zero from the start: a dashboard line, not "no data"
            for reason in ("commit_conflict", "io"):  # work.reason_of's names; another shows when it happens
                metrics.LAKE_OFFLOAD_FAILURES.labels(name, reason)
            metrics.LAKE_AUDIT_FAILURES.labels(name)
        self.worker: ColdWorker = make_worker(self.worker_kind, self.settings, self.client, self.open_catalog,
                                              list(self.states), self.warehouse_executor)
        self._lake_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake")
        self.last_audit: list[AuditResult] = []
        self.last_maintenance: list[MaintenanceResult] = []

    async def _on_lake_thread(self, job: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._lake_executor, job, *args)

    # --- one run of one table --------------------------------------------------------------------
    async def run_table(self, name: str) -> OffloadRun:
        """Offload one table up to now - safety lag, in one or more commits; never raises."""
        state = self.states[name]
        result = await self._on_lake_thread(self.worker.offload, name)
        metrics.LAKE_OFFLOAD_SECONDS.labels(name).observe(result.seconds)
        if result.rows:
            metrics.LAKE_OFFLOADED_ROWS.labels(name).inc(result.rows)
            metrics.LAKE_OFFLOAD_COMMITS.labels(name).inc(result.commits)
        if result.error:
            state.failures += 1
            state.last_error = result.error
            metrics.LAKE_OFFLOAD_FAILURES.labels(name, result.reason).inc()
            log.warning("offload of %s failed (%d in a row): %s", name, state.failures, state.last_error)
        else:
            # Everything that could be offloaded by the bound is in cold now: the lag counts from there,
            # not from the newest row (a table with rare rows, dead letters, or closed candle windows
            # awaiting a quiet market's next trade, would look hours behind while nothing waits).
            state.position = result.bound
            state.failures, state.last_error, state.last_success = 0, "", time.time()
            state.rows += result.rows
            state.commits += result.commits
            metrics.LAKE_LAST_OFFLOAD.labels(name).set(state.last_success)
            if result.commits:
                log.info("offloaded %s: %d rows in %d commits", name, result.rows, result.commits)
        if state.position:
            metrics.LAKE_OFFLOAD_LAG.labels(name).set(time.time() - state.position)
        return result

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
                        await self.run_table(state.name)
                        state.due = time.monotonic() + self.next_delay(state)
                    elif state.position:
                        metrics.LAKE_OFFLOAD_LAG.labels(state.name).set(time.time() - state.position)
                await self._on_lake_thread(self.worker.release_if_idle)
                wake = min(state.due for state in self.states.values())
                await asyncio.sleep(max(0.05, min(wake - time.monotonic(), 5.0)))
        finally:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)

    async def run_once(self) -> list[OffloadRun]:
        """Every table once, in order (``ticklake offload --once``)."""
        return [await self.run_table(name) for name in self.states]

    # --- maintenance and audit ------------------------------------------------------------------
    async def maintain_and_audit(self) -> tuple[list[MaintenanceResult], list[AuditResult]]:
        """Maintain every table, then audit every table against the warm tier and record the results.
        Never raises: failures are in the results, the logs and the metrics."""
        maintained = []
        for name in self.states:
            maintenance = await self._on_lake_thread(self.worker.maintain, name)
            count_maintenance(maintenance)
            maintained.append(maintenance)
        audited = []
        run_id = new_run_id()
        for name in self.states:
            audit = await self._on_lake_thread(self.worker.audit, name, run_id)
            count_audit(audit)
            audited.append(audit)
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.warehouse_executor or self._lake_executor, record, self.client, audited)
        except Exception:
            log.exception("could not record the audit results in lake_audits")
        self.last_maintenance, self.last_audit = maintained, audited
        return maintained, audited

    async def maintain_forever(self) -> None:
        """Maintenance and audit every ``lake.maintenance_interval_hours``, counted from the last run
        recorded in the tables; a first run one offload interval after the start when none is."""
        interval = self.lake.maintenance_interval_hours * 3600
        await asyncio.sleep(self.lake.offload_interval_s)  # let the first offloads go first
        while True:
            try:
                last = await self._on_lake_thread(self.worker.last_maintained)
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
        self._lake_executor.shutdown(wait=True)  # a job in flight completes (or fails) before exit
        self.worker.close()
