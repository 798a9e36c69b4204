"""The cold tier's jobs, each one table at a time: offload, maintain, audit.

Everything here that touches Iceberg runs where the cold tier's worker runs (worker.py: a thread of
the platform, or a process of its own); the warehouse is reached through ``warm``. Each job returns a
plain report (results.py) and never raises: the schedule (offloader.py) counts and logs the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException

from ticklake.lake import audit
from ticklake.lake.maintain import maintain_table
from ticklake.lake.offload import Batch, offload_table
from ticklake.lake.results import AuditResult, MaintenanceResult, OffloadRun, audit_failed
from ticklake.lake.tables import TABLES, LakeTable
from ticklake.lake.warm import WarmTier
from ticklake.settings import Settings

log = logging.getLogger(__name__)

MAINTAINED_AT = "ticklake.maintained_at"


def reason_of(exc: BaseException) -> str:
    """A short, bounded label for the failure metric."""
    if isinstance(exc, CommitFailedException):
        return "commit_conflict"  # another offloader (or maintenance) committed first: retried
    if isinstance(exc, OSError):
        return "io"
    return type(exc).__name__


class ColdWork:
    """The jobs, against one catalog (opened on first use, reopened after a failure that may be its own)
    and one warm tier."""

    def __init__(self, settings: Settings, warm: WarmTier, open_catalog: Callable[[], Catalog],
                 tables: Sequence[str] = tuple(TABLES)) -> None:
        self.settings = settings
        self.lake = settings.lake
        self.warm = warm
        self.open_catalog = open_catalog
        self.tables: Mapping[str, LakeTable] = {name: TABLES[name] for name in tables}  # the platform knows names
        self._catalog: Catalog | None = None

    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = self.open_catalog()
        return self._catalog

    def offload(self, name: str) -> OffloadRun:
        """Offload one table up to now - safety lag, in one or more commits."""
        started = time.monotonic()
        committed = [0, 0]  # rows, commits: they stand even when a later commit fails, so count them either way

        def count(batch: Batch) -> None:
            committed[0] += batch.rows.num_rows
            committed[1] += 1

        try:
            done = offload_table(self.warm, self.catalog(), self.lake.namespace, self.tables[name],
                                 safety_lag_s=self.lake.safety_lag_s, max_rows_per_commit=self.lake.max_rows_per_commit,
                                 on_commit=count)
        except Exception as exc:
            if not isinstance(exc, CommitFailedException):
                self._catalog = None  # reconnect next time: the catalog may have been the cause
            return OffloadRun(name, committed[0], committed[1],
                              seconds=time.monotonic() - started, error=f"{type(exc).__name__}: {exc}"[:500],
                              reason=reason_of(exc))
        return OffloadRun(name, done.rows, done.commits, bound=done.bound, seconds=done.seconds)

    def maintain(self, name: str) -> MaintenanceResult:
        """Compact, expire, remove orphans; then mark the table maintained (a table property)."""
        result = maintain_table(self.catalog(), self.lake.namespace, self.tables[name], self.lake)
        if result.ok and not result.missing:
            try:
                table = self.catalog().load_table((self.lake.namespace, name))
                with table.transaction() as tx:
                    tx.set_properties({MAINTAINED_AT: str(int(time.time()))})
            except Exception as exc:  # an offload committed meanwhile: the next check runs it again
                log.info("could not mark %s maintained (%s)", name, exc)
        return result

    def audit(self, name: str, run_id: str) -> AuditResult:
        try:
            return audit.audit_table(self.warm, self.catalog(), self.lake.namespace, self.tables[name],
                                     self.settings, run_id=run_id)
        except Exception as exc:
            log.exception("cold tier audit of %s failed", name)
            self._catalog = None
            return audit_failed(name, run_id, exc)

    def last_maintained(self) -> float:
        """The oldest ``maintained_at`` of the tables that exist (0: one never was)."""
        oldest = time.time()
        for name in self.tables:
            try:
                table = self.catalog().load_table((self.lake.namespace, name))
            except Exception:
                continue  # not created yet: nothing to maintain
            oldest = min(oldest, float(table.properties.get(MAINTAINED_AT, "0")))
        return oldest
