"""The offloader as users run it: on its own schedule inside ``ticklake up`` and as ``ticklake offload``,
``--once`` for cron, tables independent, failures retried and visible, and exactly once through kill -9
at random points (docs/lake.md, "The offloader")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from tests.factories import frame, trade
from tests.support.lake import NAMESPACE, rows, settle, tape, warm
from tests.support.processes import REPO, env_for, running, stop, ticklake, wait_for
from ticklake.lake.catalog import open_catalog
from ticklake.lake.offload import CLOSED_BEFORE, closed_before
from ticklake.lake.offloader import Offloader
from ticklake.lake.tables import TABLES
from ticklake.lake.work import MAINTAINED_AT
from ticklake.ops import metrics
from ticklake.settings import LakeSettings, Settings, ValidationSettings
from ticklake.warehouse.writer import WarehouseWriter

pytestmark = pytest.mark.integration

FAST = {"TICKLAKE_LAKE__SAFETY_LAG_S": "2", "TICKLAKE_LAKE__OFFLOAD_INTERVAL_S": "1",
        "TICKLAKE_LAKE__RETRY_INITIAL_S": "0.5"}


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


@pytest.mark.parametrize("worker", ["process", "thread"])
async def test_tables_offload_independently_and_a_failing_one_is_retried(warehouse: Client, tmp_path: Path,
                                                                          worker: Literal["process", "thread"]) -> None:
    settings = LakeSettings(offload_interval_s=1, safety_lag_s=2, retry_initial_s=0.2)
    catalog = open_catalog(settings, tmp_path)
    # A dead_letters table someone created by hand with another schema: its offload cannot succeed.
    catalog.create_namespace_if_not_exists(NAMESPACE)
    catalog.create_table((NAMESPACE, "dead_letters"), schema=Schema(NestedField(1, "x", LongType(), required=False)))
    trades = tape(1, 600)
    trades[5] = trade(99_999, "-1", "0.5")  # rejected by validation: a dead letter
    WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", trade_count=len(trades))], trades)
    settle(warehouse, lag_s=2)  # the Offloader's lag: settings allow no less
    failures_before = counter(metrics.LAKE_OFFLOAD_FAILURES, "dead_letters", "ValueError")
    offloader = Offloader(Settings(lake=settings), warehouse, partial(open_catalog, settings, tmp_path),
                          worker_kind=worker)
    task = asyncio.create_task(offloader.run_forever())
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (offloader.states["dead_letters"].failures < 3
                                               or not offloader.states["gold_ohlcv_1d"].last_success):
            await asyncio.sleep(0.2)

        # Every other table went on, exactly.
        assert rows(catalog.load_table((NAMESPACE, "silver_trades")).scan().to_arrow()) == warm(warehouse)
        for name in ("raw_frames", "bronze_trades", "gold_ohlcv_1m", "gold_ohlcv_1d"):
            assert offloader.states[name].last_success and not offloader.states[name].failures, name
        # The failing one is retried (three failures within seconds: backoff starts small), counted and shown.
        assert offloader.states["dead_letters"].failures >= 3
        assert counter(metrics.LAKE_OFFLOAD_FAILURES, "dead_letters", "ValueError") >= failures_before + 3
        health = offloader.health()
        assert health["status"] == "degraded" and health["failing"] == ["dead_letters"]
        silver_lag = metrics.LAKE_OFFLOAD_LAG.labels("silver_trades")._value.get()
        assert 0 < silver_lag < 30  # the watermark is a few seconds behind the clock

        # Fixed (the bad table dropped): the next retry offloads the dead letter.
        catalog.drop_table((NAMESPACE, "dead_letters"))
        deadline = time.monotonic() + 30
        while offloader.states["dead_letters"].failures and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        dead = catalog.load_table((NAMESPACE, "dead_letters")).scan().to_arrow()
        assert dead["trade_id"].to_pylist() == [99_999] and dead["rule"].to_pylist() == ["non_positive_price"]
        assert offloader.health()["status"] == "ok"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        offloader.close()


@pytest.mark.slow  # waits for runs a few seconds after the row's second
async def test_the_lag_of_a_table_with_rare_rows_counts_from_the_last_run_not_its_last_row(
        warehouse: Client, tmp_path: Path) -> None:
    """Dead letters are rare: a table whose newest row is old is not behind once a run found nothing
    more to offload. The lag (what TicklakeLakeOffloadLagHigh watches) counts from the run's bound."""
    settings = LakeSettings(offload_interval_s=1, safety_lag_s=2, retry_initial_s=0.2)
    trades = tape(1, 20)
    trades[3] = trade(99_999, "-1", "0.5")  # a dead letter, the only one
    WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", trade_count=len(trades))], trades)
    settle(warehouse, lag_s=2)
    stored_at = int(warehouse.query("SELECT toUnixTimestamp(max(stored_at)) FROM dead_letters").result_rows[0][0])
    offloader = Offloader(Settings(lake=settings), warehouse, partial(open_catalog, settings, tmp_path),
                          tables=["dead_letters"])
    state = offloader.states["dead_letters"]
    task = asyncio.create_task(offloader.run_forever())
    try:
        # Runs after the row's second move the position to their bound; counted from the row it would
        # stay at stored_at for good.
        deadline = time.monotonic() + 60
        while state.rows < 1 or state.position <= stored_at + 3:
            assert time.monotonic() < deadline, f"the lag still counts from the dead letter's second: {state.position}"
            assert not state.failures, state.last_error
            await asyncio.sleep(0.2)
        lag = counter(metrics.LAKE_OFFLOAD_LAG, "dead_letters")
        since_the_row = time.time() - stored_at
        assert lag < since_the_row - 3, (lag, since_the_row)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        offloader.close()


@pytest.mark.parametrize("worker", ["process", "thread"])
async def test_maintenance_and_audit_run_on_their_schedule_and_a_mismatch_shows(
        warehouse: Client, tmp_path: Path, worker: Literal["process", "thread"]) -> None:
    lake = LakeSettings(offload_interval_s=1, safety_lag_s=2, retry_initial_s=0.2, maintenance_interval_hours=0.001)
    catalog = open_catalog(lake, tmp_path)
    for first in (1, 301):  # two inserts, two offloads: files for compaction to merge
        trades = tape(first, 300)
        WarehouseWriter(warehouse, ValidationSettings()).write([frame("{}", frame_seq=first, trade_count=300)], trades)
        settle(warehouse, lag_s=2)  # the Offloader's lag: settings allow no less
        offloaded = Offloader(Settings(lake=lake), warehouse, partial(open_catalog, lake, tmp_path))
        await offloaded.run_once()
        offloaded.close()
    offloader = Offloader(Settings(lake=lake), warehouse, partial(open_catalog, lake, tmp_path), worker_kind=worker)
    task = asyncio.create_task(offloader.run_forever())
    try:
        deadline = time.monotonic() + 60
        while not offloader.last_audit and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert offloader.last_audit, "no audit within a minute"
        assert all(r.ok for r in offloader.last_maintenance), offloader.last_maintenance
        assert all(r.ok for r in offloader.last_audit), [r.summary() for r in offloader.last_audit]
        silver = catalog.load_table((NAMESPACE, "silver_trades"))
        assert MAINTAINED_AT in silver.properties
        files = list(silver.scan().plan_files())
        assert len(files) == len({f.file.partition for f in files})  # two offloads' files: one per partition
        assert rows(silver.scan().to_arrow()) == warm(warehouse)
        recorded = warehouse.query("SELECT count(), countIf(status = 'mismatch') FROM lake_audits").first_row
        assert recorded[0] > 0 and recorded[1] == 0

        # A row lost from the cold copy: the next audit says so, in health and metrics.
        silver.delete("trade_id = 7")
        first_run = offloader.last_audit[0].run_id
        deadline = time.monotonic() + 60
        while offloader.last_audit[0].run_id == first_run and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        health = offloader.health()
        assert health["status"] == "degraded" and health["audit_mismatches"] == ["silver_trades"]
        assert metrics.LAKE_AUDIT_MISMATCHED.labels("silver_trades")._value.get() >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        offloader.close()


def test_backoff_grows_to_the_interval_and_resets_after_a_success() -> None:
    offloader = Offloader(Settings(lake=LakeSettings(offload_interval_s=60, retry_initial_s=1)),
                          client=None,  # type: ignore[arg-type]
                          open_catalog=lambda: None)  # type: ignore[arg-type, return-value]
    state = offloader.states["silver_trades"]
    delays = []
    for failures in range(1, 10):
        state.failures = failures
        delays.append(offloader.next_delay(state))
    assert 0.8 <= delays[0] <= 1 and 1.6 <= delays[1] <= 2 and 3.2 <= delays[2] <= 4
    assert max(delays) <= 60 and delays[-1] >= 48
    state.failures = 0
    assert offloader.next_delay(state) == 60
    offloader.close()


# --- as processes ---------------------------------------------------------------------------------

def dump_warm(data_dir: Path, out: Path) -> dict[str, pa.Table]:
    subprocess.run([sys.executable, "-m", "tests.lake.warm_dump", str(data_dir), str(out)], cwd=REPO, check=True,
                   env=env_for(data_dir), timeout=120)
    return {name: pa.ipc.open_file(str(out / f"{name}.arrow")).read_all() for name in TABLES}


def assert_cold_equals_warm(data_dir: Path, out: Path) -> dict[str, int]:
    """Every cold table holds exactly the warm rows (candles: of the windows it says are closed), each
    once. Returns the row count per table."""
    catalog: Catalog = open_catalog(LakeSettings(), data_dir)
    counts = {}
    for name, warm_rows in dump_warm(data_dir, out).items():
        spec = TABLES[name]
        table = catalog.load_table((NAMESPACE, name))
        cold_rows = rows(table.scan().to_arrow())
        if spec.timeframe is not None:
            closed = closed_before(table)
            assert CLOSED_BEFORE in table.properties or not cold_rows
            warm_rows = warm_rows.filter(pa.compute.less(warm_rows["bucket"].cast(pa.int64()),
                                                         pa.scalar(closed * 1_000_000, pa.int64())))
            keys = [(r[0], r[1], r[2]) for r in cold_rows]
            assert len(keys) == len(set(keys)), f"{name}: a candle twice"
        expected = rows(warm_rows)
        assert cold_rows == expected, f"{name}: cold {len(cold_rows)} rows, warm {len(expected)}"
        counts[name] = len(cold_rows)
    return counts


SIMULATE = {"TICKLAKE_VENUES__BINANCE__SYMBOLS": '["BTC/USDT","ETH/USDT"]',
            "TICKLAKE_VENUES__KRAKEN__SYMBOLS": '["BTC/USD"]', "TICKLAKE_VENUES__COINBASE__SYMBOLS": '["BTC/USD"]'}


@pytest.mark.slow
def test_up_offloads_on_its_schedule_and_offload_once_finishes_the_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = env_for(data_dir, **SIMULATE, **FAST, TICKLAKE_SIMULATOR__TRADES_PER_SECOND="40")
    with running("up", "--simulate", env=env) as (process, base):
        health = wait_for(f"{base}/health", lambda r: r.json()["components"].get("lake", {}).get("tables", {})
                          .get("silver_trades", {}).get("rows", 0) > 0, timeout=90).json()
        assert health["components"]["lake"]["status"] == "ok"
        text = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'ticklake_lake_offloaded_rows_total{table="silver_trades"}' in text
        assert 'ticklake_lake_offload_lag_seconds{table="silver_trades"}' in text
        stop(process)

    time.sleep(2.5)  # past the safety lag: everything stored may now be offloaded
    first = ticklake("offload", "--once", env=env)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == len(TABLES)
    again = ticklake("offload", "--once", env=env)
    # Nothing new stored: nothing to offload again (a candle window may have closed meanwhile).
    assert again.returncode == 0 and all(": 0 rows in 0 commits" in line for line in again.stdout.splitlines()
                                         if not line.startswith("gold_")), again.stdout
    counts = assert_cold_equals_warm(data_dir, tmp_path / "dump")
    assert counts["silver_trades"] > 100  # (candles: only if a minute closed during the run)

    maintained = ticklake("maintain", env=env)  # compaction, expiry, orphans, then the audit
    assert maintained.returncode == 0, maintained.stdout + maintained.stderr
    lines = maintained.stdout.splitlines()
    assert "MISMATCH" not in maintained.stdout
    assert any(line.startswith("silver_trades: ok ") and f"warm {counts['silver_trades']} rows" in line
               for line in lines), lines  # the audit compared every offloaded silver row
    assert assert_cold_equals_warm(data_dir, tmp_path / "dump-after") == counts

    bad = ticklake("offload", "--once", "--table", "nope", env=env)
    assert bad.returncode == 2 and "unknown cold tables ['nope']" in bad.stderr


def _first_line_with(process: subprocess.Popen[str], text: str) -> threading.Event:
    """Set when the process first prints a line containing ``text``; its output is drained to the end."""
    seen = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if text in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    return seen


@pytest.mark.slow
def test_kill_9_at_random_points_then_a_rerun_leaves_cold_equal_to_warm(tmp_path: Path) -> None:
    """20 SIGKILLs of the offloader while it works through a backlog in small commits, with new trades
    stored between rounds; then one run to the end: every table equal to warm, nothing twice."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    env = env_for(data_dir, **SIMULATE, **{**FAST, "TICKLAKE_LAKE__OFFLOAD_INTERVAL_S": "0.3"},
                  TICKLAKE_LAKE__ENABLED="false", TICKLAKE_SIMULATOR__TRADES_PER_SECOND="400",
                  TICKLAKE_LAKE__MAX_ROWS_PER_COMMIT="150")
    kills = 0
    for _round in range(2):
        with running("up", "--simulate", env=env) as (process, base):  # more warm data, the offloader not running
            wait_for(f"{base}/health", lambda r: r.status_code == 200)
            time.sleep(2)
            stop(process)
        time.sleep(2.1)  # past the safety lag
        for _kill in range(10):
            # A session of its own: the role and its cold-tier worker process (lake/worker.py) die together,
            # as a container's or a service manager's kill takes both.
            offloader = subprocess.Popen([sys.executable, "-m", "ticklake.cli", "offload"], cwd=REPO, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)
            # Killed anywhere in its first seconds of work, counted from its worker being ready (the
            # worker's "ready" line; ~1.5 s after the start on a quiet machine, far longer on a loaded one).
            try:
                ready = _first_line_with(offloader, "[cold-tier worker]: ready")
                assert ready.wait(90), "the offloader's worker never started"
                time.sleep(rng.uniform(0, 2.2))
            finally:
                with contextlib.suppress(ProcessLookupError):  # already gone: the test fails on its own
                    os.killpg(offloader.pid, signal.SIGKILL)
                offloader.wait(30)
            kills += 1
    assert kills == 20
    # The killed processes did work (so the kills fell among commits), and left some for the re-run.
    snapshots = len(open_catalog(LakeSettings(), data_dir).load_table((NAMESPACE, "silver_trades")).snapshots())
    assert snapshots >= 5, snapshots

    done = ticklake("offload", "--once", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = assert_cold_equals_warm(data_dir, tmp_path / "dump")
    assert counts["silver_trades"] > 1000
