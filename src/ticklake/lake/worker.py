"""Where the cold tier's jobs run: a thread of the platform, or a short-lived process of its own.

The jobs (work.py) write Parquet through pyarrow, commit through pyiceberg, sort a compaction group
in memory and hash a month of candles for the audit. In the always-on platform process that costs
~75-140 MB of resident memory that stays after the job (Arrow's and pyiceberg's working set; measured
in docs/soak.md), for work that runs a few seconds every ``lake.offload_interval_s``. So the platform
runs them in a **worker process** (``lake.worker = "process"``, the default): started when a job is
due, stopped once no job came for ``lake.worker_idle_s``; the platform process never imports
pyiceberg for them.

The worker cannot open the warehouse (the embedded engine belongs to one process), so it asks the
platform: over one socket, the platform sends a job, the worker answers with warehouse calls
(warm.py), each run by the platform on its warehouse thread and answered, then with the job's report.
A worker that dies mid-job (killed, out of memory) fails that job like a lost catalog would: nothing
is committed twice, because an offload's rows and its watermark are one Iceberg commit (offload.py);
the next job starts a new worker.

``"thread"`` runs the same jobs on the platform's lake thread (``ticklake offload --once``, tests).

    python -m ticklake.lake.worker FD PID   (started by ProcessWorker; FD: its end of the socket, PID: the
                                             platform's, which it does not outlive)
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clickhouse_connect.driver.client import Client

from ticklake.lake.results import AuditResult, MaintenanceResult, OffloadRun
from ticklake.lake.warm import RelayedWarehouse, WarehouseCall, run_call
from ticklake.settings import LakeSettings, Settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from ticklake.lake.work import ColdWork

log = logging.getLogger("ticklake.lake.worker")  # not "__main__" when run as the worker process

OpenCatalog = Callable[[], "Catalog"]


@dataclass(frozen=True)
class SettingsCatalog:
    """Opens the catalog ``lake`` names: picklable, and imports pyiceberg only when called (in the worker)."""

    lake: LakeSettings
    data_dir: Path

    def __call__(self) -> Catalog:
        from ticklake.lake.catalog import open_catalog

        return open_catalog(self.lake, self.data_dir)


class WorkerDied(RuntimeError):
    """The worker process ended before it answered."""


class ColdWorker(Protocol):
    """Runs one job at a time, on the caller's thread (the platform's lake thread), and returns its report."""

    def offload(self, name: str) -> OffloadRun: ...
    def maintain(self, name: str) -> MaintenanceResult: ...
    def audit(self, name: str, run_id: str) -> AuditResult: ...
    def last_maintained(self) -> float: ...
    def release_if_idle(self) -> None: ...
    def close(self) -> None: ...


def _warehouse_runner(client: Client, executor: Executor | None) -> Callable[[WarehouseCall], Any]:
    """Runs a warehouse call on the warehouse's own thread (``executor``), or here when there is none."""
    if executor is None:
        return lambda call: run_call(client, call)
    return lambda call: executor.submit(run_call, client, call).result()


class ThreadWorker:
    """The jobs on the caller's thread, the warehouse reached through ``warehouse_executor``."""

    def __init__(self, settings: Settings, client: Client, open_catalog: OpenCatalog, tables: Sequence[str],
                 warehouse_executor: Executor | None = None) -> None:
        from ticklake.lake.work import ColdWork

        warm = RelayedWarehouse(_warehouse_runner(client, warehouse_executor))
        self.work: ColdWork = ColdWork(settings, warm, open_catalog, tables)

    def offload(self, name: str) -> OffloadRun:
        return self.work.offload(name)

    def maintain(self, name: str) -> MaintenanceResult:
        return self.work.maintain(name)

    def audit(self, name: str, run_id: str) -> AuditResult:
        return self.work.audit(name, run_id)

    def last_maintained(self) -> float:
        return self.work.last_maintained()

    def release_if_idle(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessWorker:
    """The jobs in ``python -m ticklake.lake.worker``, started on demand, stopped when idle.

    ``open_catalog`` is pickled to the worker (``functools.partial(open_catalog, lake, data_dir)``
    is; a lambda is not), with ``settings``."""

    def __init__(self, settings: Settings, client: Client, open_catalog: OpenCatalog, tables: Sequence[str],
                 warehouse_executor: Executor | None = None, idle_s: float = 10.0) -> None:
        self.settings = settings
        self.open_catalog = open_catalog
        self.tables = list(tables)
        self.idle_s = idle_s
        self._run_call = _warehouse_runner(client, warehouse_executor)
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._last_job_end = 0.0
        self._lock = threading.Lock()  # one job at a time, whichever thread asks
        self.started = 0  # worker processes started so far (a figure for tests and the bench)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def _start(self) -> Connection:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ticklake.lake.worker", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self._connection.send((self.settings, self.open_catalog, self.tables))
        self.started += 1
        log.debug("cold-tier worker process %d started", self._process.pid)
        return self._connection

    def _job(self, job: str, *args: Any) -> Any:
        with self._lock:
            connection = self._connection if self.pid is not None else None
            if connection is None:
                self._stop()
                connection = self._start()
            try:
                connection.send((job, args))
                while True:
                    kind, value = connection.recv()
                    if kind == "call":  # the worker asks the warehouse
                        try:
                            connection.send(("answer", self._run_call(value)))
                        except Exception as exc:
                            connection.send(("refused", f"{type(exc).__name__}: {exc}"))
                    elif kind == "done":
                        return value
                    else:
                        raise RuntimeError(f"the cold-tier worker sent {kind!r}")
            except (EOFError, OSError) as exc:
                status = self._stop()
                raise WorkerDied(f"the cold-tier worker process ended during {job} {args} "
                                 f"(exit status {status}): {type(exc).__name__}") from None
            finally:
                self._last_job_end = time.monotonic()

    def offload(self, name: str) -> OffloadRun:
        try:
            result: OffloadRun = self._job("offload", name)
        except WorkerDied as exc:
            return OffloadRun(name, error=str(exc), reason="worker_died")
        return result

    def maintain(self, name: str) -> MaintenanceResult:
        try:
            result: MaintenanceResult = self._job("maintain", name)
        except WorkerDied as exc:
            return MaintenanceResult(name, error=str(exc))
        return result

    def audit(self, name: str, run_id: str) -> AuditResult:
        try:
            result: AuditResult = self._job("audit", name, run_id)
        except WorkerDied as exc:
            return AuditResult(table=name, run_id=run_id, checked_at=int(time.time()), error=str(exc))
        return result

    def last_maintained(self) -> float:
        value: float = self._job("last_maintained")
        return value

    def release_if_idle(self) -> None:
        """Stop the worker when no job came for ``idle_s``: its memory goes back to the machine."""
        with self._lock:
            if self._process is not None and time.monotonic() - self._last_job_end >= self.idle_s:
                self._stop()

    def _stop(self) -> int | None:
        """End the worker (it exits on the closed socket) and return its exit status."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            connection.close()
        if process is None:
            return None
        try:
            return process.wait(timeout=30)  # a commit in flight completes first
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()


def make_worker(kind: str, settings: Settings, client: Client, open_catalog: OpenCatalog, tables: Sequence[str],
                warehouse_executor: Executor | None = None) -> ColdWorker:
    if kind == "process":
        return ProcessWorker(settings, client, open_catalog, tables, warehouse_executor,
                             idle_s=settings.lake.worker_idle_s)
    return ThreadWorker(settings, client, open_catalog, tables, warehouse_executor)


# --- the worker process ----------------------------------------------------------------------------
def _serve(connection: Connection) -> None:
    from ticklake.lake.work import ColdWork

    settings, open_catalog, tables = connection.recv()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)-7s %(name)s [cold-tier worker]: %(message)s")

    def ask(call: WarehouseCall) -> Any:
        connection.send(("call", call))
        kind, value = connection.recv()
        if kind != "answer":
            raise RuntimeError(f"warehouse: {value}")
        return value

    work = ColdWork(settings, RelayedWarehouse(ask), open_catalog, tables)
    log.info("ready (pid %d): jobs for %d cold tables", os.getpid(), len(tables))
    jobs: dict[str, Callable[..., Any]] = {"offload": work.offload, "maintain": work.maintain,
                                           "audit": work.audit, "last_maintained": work.last_maintained}
    while True:
        try:
            job, args = connection.recv()
        except EOFError:
            return  # the platform is done with us (or gone)
        connection.send(("done", jobs[job](*args)))


def _die_with_the_platform(platform_pid: int) -> None:
    """A killed platform leaves no worker at work behind it (a commit cut short is safe: offload.py):
    Linux's parent-death signal, then a check that the platform did not end before it was set."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != platform_pid:
        sys.exit(0)


def main(argv: Sequence[str]) -> int:
    _die_with_the_platform(int(argv[1]))
    connection = Connection(int(argv[0]))
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        _serve(connection)  # ends early when the platform ended mid-job: nothing to answer to
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
