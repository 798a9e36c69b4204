"""The cold tier's worker process (ticklake.lake.worker): the jobs run outside the platform process,
reach the warehouse through it, and a worker that dies mid-job loses nothing and doubles nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from tests.support.lake import NAMESPACE, rows, settle, tape, warm, write
from tests.support.processes import REPO, env_for
from ticklake.lake.catalog import open_catalog
from ticklake.lake.offloader import Offloader
from ticklake.lake.warm import WarehouseCall
from ticklake.lake.worker import ProcessWorker, SettingsCatalog
from ticklake.ops import metrics
from ticklake.settings import LakeSettings, Settings


def test_the_platform_process_imports_no_iceberg_to_schedule_the_cold_tier(tmp_path: Path) -> None:
    """What keeps the platform's memory flat: pyiceberg (and what it pulls in) only in the worker."""
    code = ("import sys; import ticklake.lake.offloader, ticklake.lake.worker; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyiceberg', 'sqlalchemy'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env_for(tmp_path), capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def offloader(warehouse: Client, tmp_path: Path, lake: LakeSettings) -> Offloader:
    return Offloader(Settings(lake=lake), warehouse, SettingsCatalog(lake, tmp_path), tables=["silver_trades"],
                     worker_kind="process")


@pytest.mark.integration
async def test_a_worker_killed_mid_job_fails_that_run_and_the_next_run_offloads_each_row_once(
        warehouse: Client, tmp_path: Path) -> None:
    lake = LakeSettings(safety_lag_s=2, max_rows_per_commit=100)
    for first in (1, 151, 301):  # three stored_at seconds: a commit each (commits end on a second)
        write(warehouse, tape(first, 150))
        time.sleep(1.05)
    settle(warehouse, lag_s=2)
    cold = offloader(warehouse, tmp_path, lake)
    worker = cold.worker
    assert isinstance(worker, ProcessWorker)
    relay = worker._run_call
    arrow_calls = []

    def kill_on_the_second_batch(call: WarehouseCall) -> Any:
        # The first batch is committed, the worker dies while it reads the second (a partial run).
        if call.kind == "arrow":
            arrow_calls.append(call)
            if len(arrow_calls) == 2:
                assert worker.pid is not None
                os.kill(worker.pid, signal.SIGKILL)
        return relay(call)

    worker._run_call = kill_on_the_second_batch
    failures = metrics.LAKE_OFFLOAD_FAILURES.labels("silver_trades", "worker_died")._value.get()
    try:
        failed = await cold.run_table("silver_trades")
        assert failed.error and failed.reason == "worker_died", failed
        assert cold.states["silver_trades"].failures == 1 and cold.health()["status"] == "degraded"
        assert metrics.LAKE_OFFLOAD_FAILURES.labels("silver_trades", "worker_died")._value.get() == failures + 1
        table = open_catalog(lake, tmp_path).load_table((NAMESPACE, "silver_trades"))
        assert len(table.scan().to_arrow()) == 150  # the commit before the kill stands

        worker._run_call = relay
        done = await cold.run_table("silver_trades")
        assert not done.error and done.rows == 300 and done.commits == 2
        assert worker.started == 2
        table = open_catalog(lake, tmp_path).load_table((NAMESPACE, "silver_trades"))
        assert rows(table.scan().to_arrow()) == warm(warehouse)  # every row, each once
        assert cold.health()["status"] == "ok"
    finally:
        cold.close()
    assert worker.pid is None


@pytest.mark.integration
async def test_the_worker_leaves_when_idle_and_a_due_job_starts_another(warehouse: Client, tmp_path: Path) -> None:
    lake = LakeSettings(safety_lag_s=2, worker_idle_s=0)
    cold = offloader(warehouse, tmp_path, lake)
    worker = cold.worker
    assert isinstance(worker, ProcessWorker)
    try:
        write(warehouse, tape(1, 50))
        settle(warehouse, lag_s=2)
        assert (await cold.run_table("silver_trades")).rows == 50
        pid = worker.pid
        assert pid is not None
        worker.release_if_idle()
        assert worker.pid is None
        with pytest.raises(ProcessLookupError):  # gone, not a zombie waiting to be reaped
            os.kill(pid, 0)

        write(warehouse, tape(51, 50))
        settle(warehouse, lag_s=2)
        assert (await cold.run_table("silver_trades")).rows == 50
        assert worker.started == 2
        table = open_catalog(lake, tmp_path).load_table((NAMESPACE, "silver_trades"))
        assert rows(table.scan().to_arrow()) == warm(warehouse)
    finally:
        cold.close()


@pytest.mark.integration
async def test_a_catalog_the_worker_cannot_open_is_a_failed_run_with_its_reason(warehouse: Client,
                                                                                tmp_path: Path) -> None:
    lake = LakeSettings(safety_lag_s=2, catalog="rest", uri="http://127.0.0.1:9", io_timeout_s=1)
    cold = Offloader(Settings(lake=lake), warehouse, partial(open_catalog, lake, tmp_path), worker_kind="process")
    try:
        result = await cold.run_table("silver_trades")
        assert result.error and "Connection" in result.error, result
        assert cold.states["silver_trades"].last_error == result.error
    finally:
        cold.close()
