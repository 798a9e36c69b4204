"""Benchmark stages of the cold tier (stage 7 of ``ticklake bench``). Like ``stages``, each runs in
its own process (chdb opens one data path per process) and prints one JSON object on its last line.

    python -m ticklake.bench.lake_stages offload PATH TRADES MARKETS ROUNDS COMMITS
    python -m ticklake.bench.lake_stages year PATH MARKETS STEP_S COMMITS
    python -m ticklake.bench.lake_stages serve PATH PORT BOUNDARY
    python -m ticklake.bench.lake_stages compact PATH TABLE

``offload``: a day of trades written through the writer, then, per layer, the offload (``offload_table``
into a fresh SQLite catalog) against a bare pyiceberg ``append`` of the very same Arrow rows into a
fresh table of the same schema and partitioning, alternating; then the same day as a day of 15-minute
offloads (COMMITS commits per table) and the daily maintenance over it.

``year``: a year of trades generated inside ClickHouse, its 1h candles offloaded in COMMITS commits.
``serve`` answers ``/v1/ohlcv`` from that warehouse and catalog: the tiered app (ranges before
BOUNDARY from the cold tier) at ``/``, the warm-only app at ``/warm``. ``compact`` runs the
maintenance of one cold table.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import time
from datetime import timedelta
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.table import Table

from ticklake.bench.stages import peak_rss_mb, synthetic_trades
from ticklake.lake.catalog import open_catalog
from ticklake.lake.maintain import maintain
from ticklake.lake.offload import Batch, commit, offload_bound, offload_table, prepare, prepare_candles, read_warm
from ticklake.lake.tables import BRONZE_TRADES, GOLD_OHLCV, RAW_FRAMES, SILVER_TRADES, LakeTable, ensure_table
from ticklake.settings import LakeSettings, ValidationSettings
from ticklake.times import iso_seconds, utc_from_seconds
from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.sql import split_statements
from ticklake.warehouse.writer import WarehouseWriter

NAMESPACE = "ticklake"
LAG_S = 2  # the smallest safety lag settings allow
BATCH = 50_000
DAY_S = 86_400
SLICE_S = 900  # a 15-minute offload
EVERYTHING = 2**31  # rows per commit: the whole backlog in one commit, like the bare append
OFFLOADED = (RAW_FRAMES, BRONZE_TRADES, SILVER_TRADES, GOLD_OHLCV["1m"])
MAINTAINED = (RAW_FRAMES, BRONZE_TRADES, SILVER_TRADES, *GOLD_OHLCV.values())
# Maintenance as if a week had passed: snapshot expiry (7 days) and orphan removal (72 h) then have
# this day's work to do, as a steady daily run has the day a week before.
MAINTENANCE_CLOCK_AHEAD_S = 8 * DAY_S


def _warehouse(path: str) -> Client:
    client = open_client(f"chdb://{path}", "bench")
    migrate.upgrade(client)
    return client


def day_start(days_ago: int = 2) -> int:
    """Midnight UTC ``days_ago`` days back (Unix seconds): a day whose every candle window is closed."""
    return (int(time.time()) // DAY_S - days_ago) * DAY_S


def write_day(client: Client, count: int, markets: int, start_s: int, seed: int = 7) -> None:
    """``count`` Binance trades spread evenly over the day from ``start_s``, ``markets`` markets, five
    trades a raw frame, written through the writer in 50k batches (generated batch by batch: a
    million Trade objects at once would dominate the stage's memory)."""
    rng = random.Random(seed)
    writer = WarehouseWriter(client, ValidationSettings())
    step_us = DAY_S * 1_000_000 // count
    for first in range(0, count, BATCH):
        frames, trades = synthetic_trades(min(count, first + BATCH), markets=markets, start_us=start_s * 1_000_000,
                                          step_us=step_us, first=first, rng=rng)
        writer.write(frames, trades)


def _settle(client: Client) -> None:
    """Wait until every stored row is older than the safety lag, by the warehouse's clock."""
    newest = int(client.query("SELECT toUInt32(max(stored_at)) FROM silver_trades").result_rows[0][0])
    while offload_bound(client, LAG_S) < newest:
        time.sleep(0.2)


class _Catalogs:
    """A fresh SQLite catalog (and local warehouse folder) for each use; the previous one is deleted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.current: Path | None = None

    def fresh(self) -> Catalog:
        if self.current is not None:
            shutil.rmtree(self.current, ignore_errors=True)
        self.count += 1
        self.current = self.root / f"catalog-{self.count}"
        return open_catalog(LakeSettings(), self.current)


def _batch(client: Client, table: Table, spec: LakeTable) -> Batch:
    bound = offload_bound(client, LAG_S)
    batch = prepare(client, table, spec, bound, EVERYTHING) if spec.timeframe is None else \
        prepare_candles(client, table, spec, bound, EVERYTHING)
    assert batch is not None, f"nothing to offload to {spec.name}"
    return batch


def offload_vs_append(client: Client, catalogs: _Catalogs, spec: LakeTable, rounds: int) -> dict[str, Any]:
    """offload_table against a bare ``Table.append`` of the same rows, alternating; then one offload
    taken apart: reading the rows (ClickHouse -> Arrow in the cold schema) and committing them."""
    rows = _batch(client, ensure_table(catalogs.fresh(), NAMESPACE, spec), spec).rows
    offload_s: list[float] = []
    append_s: list[float] = []
    for round_ in range(rounds + 1):  # the first round warms up (it was up to 2x slower), untimed
        catalog = catalogs.fresh()
        ensure_table(catalog, NAMESPACE, spec)  # both sides start from an existing, empty table
        started = time.perf_counter()
        result = offload_table(client, catalog, NAMESPACE, spec, safety_lag_s=LAG_S, max_rows_per_commit=EVERYTHING)
        offloaded = time.perf_counter() - started
        assert result.rows == rows.num_rows and result.commits == 1, result

        table = ensure_table(catalogs.fresh(), NAMESPACE, spec)
        started = time.perf_counter()
        table.append(rows)
        appended = time.perf_counter() - started
        if round_:
            offload_s.append(offloaded)
            append_s.append(appended)
    # Where an offload's time goes (a separate run: the timed ones above are not instrumented).
    table = ensure_table(catalogs.fresh(), NAMESPACE, spec)
    started = time.perf_counter()
    batch = _batch(client, table, spec)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    commit(table, batch)
    commit_s = time.perf_counter() - started
    catalogs.fresh()  # deletes the last one
    offload_rate = rows.num_rows / statistics.median(offload_s)
    append_rate = rows.num_rows / statistics.median(append_s)
    return {"rows": rows.num_rows, "rounds": rounds,
            "offload_rows_per_s": round(offload_rate), "append_rows_per_s": round(append_rate),
            "ratio": round(offload_rate / append_rate, 3),
            "best_ratio": round(min(append_s) / min(offload_s), 3),
            "offload_s": [round(s, 3) for s in offload_s], "append_s": [round(s, 3) for s in append_s],
            "read_s": round(read_s, 3), "commit_s": round(commit_s, 3)}


# --- a day of 15-minute offloads, and the daily maintenance --------------------------------------
def _time_of(spec: LakeTable, rows: pa.Table) -> pa.Array:
    """Unix seconds at which a row became offloadable: its time (trades, frames), or the end of its
    window (candles: only closed windows are offloaded)."""
    seconds = pc.divide(rows.column(spec.time_column).cast(pa.int64()), 1_000_000)
    return pc.add(seconds, spec.timeframe) if spec.timeframe else seconds


def offload_day(client: Client, catalog: Catalog, spec: LakeTable, start_s: int, commits: int) -> dict[str, Any]:
    """The day's rows in ``commits`` commits, as the offloader makes them every 86400/commits seconds:
    each commit the rows of its slice (candles: the windows that closed in it), sorted, with the
    watermark properties moved. Slices without rows make no commit, as in a real offload."""
    table = ensure_table(catalog, NAMESPACE, spec)
    if spec.timeframe is None:
        rows = read_warm(client, spec, {"lower": 0, "upper": 2**32 - 1})
    else:
        rows = read_warm(client, spec, {"timeframe": spec.timeframe, "closed_from": 0,
                                        "closed_before": 2**32 - 1, "changed_after": 2**32 - 1})
    ready = _time_of(spec, rows)
    slice_s = DAY_S // commits
    made = 0
    started = time.perf_counter()
    for i in range(commits):
        lower, upper = start_s + i * slice_s, start_s + (i + 1) * slice_s
        last = i == commits - 1  # the last slice takes what remains (a 1d candle closes at midnight)
        mask = pc.greater(ready, lower) if last else pc.and_(pc.greater(ready, lower), pc.less_equal(ready, upper))
        part = rows.filter(mask)
        if not part.num_rows:
            continue
        closed = upper // spec.timeframe * spec.timeframe if spec.timeframe else 0
        commit(table, Batch(lower=lower, upper=upper, rows=part, closed_before=closed))
        made += 1
    return {"rows": rows.num_rows, "commits": made, "seconds": round(time.perf_counter() - started, 2)}


def _scan_s(table: Table, row_filter: Any, rounds: int = 5) -> tuple[float, int]:
    """Median seconds of a filtered scan of the table as loaded (planning included), and its rows."""
    times: list[float] = []
    rows = 0
    for _ in range(rounds):
        started = time.perf_counter()
        rows = table.scan(row_filter=row_filter).to_arrow().num_rows
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def maintained_day(client: Client, catalogs: _Catalogs, start_s: int, commits: int) -> dict[str, Any]:
    """A day of offload commits into every table, then ``maintain`` over all of them: its time, the
    files before and after, and a filtered scan (one market, one hour of silver) before and after."""
    catalog = catalogs.fresh()
    offloads = {spec.name: offload_day(client, catalog, spec, start_s, commits) for spec in MAINTAINED}
    hour = start_s + 12 * 3600
    one_market_hour = And(And(EqualTo(term="exchange", value="binance"), EqualTo(term="symbol", value="SYM3/USDT")),
                          And(GreaterThanOrEqual(term="ts", value=iso_seconds(hour)),
                              LessThan(term="ts", value=iso_seconds(hour + 3600))))
    silver_name = (NAMESPACE, SILVER_TRADES.name)
    scan_before, scan_rows = _scan_s(catalog.load_table(silver_name), one_market_hour)
    started = time.perf_counter()
    results = maintain(catalog, LakeSettings(), tables=[spec.name for spec in MAINTAINED],
                       now=time.time() + MAINTENANCE_CLOCK_AHEAD_S)
    seconds = time.perf_counter() - started
    scan_after, scan_rows_after = _scan_s(catalog.load_table(silver_name), one_market_hour)
    tables = {r.table: {"files_before": r.files_before, "files_after": r.files_after,
                        "snapshots_expired": r.snapshots_expired, "orphans_removed": r.orphans_removed,
                        "seconds": round(r.seconds, 2), "error": r.error} for r in results}
    catalogs.fresh()
    return {"commits_per_table": commits, "offloads": offloads,
            "commit_ms": round(1000 * sum(o["seconds"] for o in offloads.values())
                               / max(1, sum(o["commits"] for o in offloads.values())), 1),
            "maintain_s": round(seconds, 2), "tables": tables,
            "files_before": sum(t["files_before"] for t in tables.values()),
            "files_after": sum(t["files_after"] for t in tables.values()),
            "scan_rows": scan_rows, "scan_rows_after": scan_rows_after,
            "scan_before_ms": round(scan_before * 1000, 1), "scan_after_ms": round(scan_after * 1000, 1)}


def offload(path: str, trades: int, markets: int, rounds: int, commits: int) -> dict[str, Any]:
    client = _warehouse(path)
    start_s = day_start()
    started = time.perf_counter()
    write_day(client, trades, markets, start_s)
    write_s = time.perf_counter() - started
    _settle(client)
    catalogs = _Catalogs(Path(path).parent / (Path(path).name + "-lake"))
    layers = {spec.name: offload_vs_append(client, catalogs, spec, rounds) for spec in OFFLOADED}
    maintenance = maintained_day(client, catalogs, start_s, commits)
    client.close()
    return {"trades": trades, "markets": markets, "write_s": round(write_s, 1), "layers": layers,
            "maintenance": maintenance, "peak_rss_mb": round(peak_rss_mb())}


# --- a year of 1h candles, served from the cold tier ---------------------------------------------
def year(path: str, markets: int, step_s: int, commits: int) -> dict[str, Any]:
    """A year of trades (one per market every ``step_s`` seconds) ending at 00:00 UTC two days ago,
    generated inside ClickHouse; its 1h candles offloaded in about ``commits`` commits."""
    root = Path(path)
    client = open_client(f"chdb://{root / 'clickhouse'}", "bench")
    migrate.upgrade(client)
    end_s = day_start()
    start_s = end_s - 365 * DAY_S
    per_market = 365 * DAY_S // step_s
    sql = split_statements((package_files.files("ticklake.bench") / "generate_trades.sql").read_text("utf-8"))[0]
    started = time.perf_counter()
    total = per_market * markets
    for offset in range(0, total, BATCH):  # a trade every step: one candle of each timeframe per trade at most
        client.command(sql, parameters={"symbols": markets, "start_us": start_s * 1_000_000,
                                        "step_us": step_s * 1_000_000, "offset": offset,
                                        "count": min(BATCH, total - offset)})
    client.command("OPTIMIZE TABLE gold_ohlcv FINAL")
    generate_s = time.perf_counter() - started
    _settle(client)
    spec = GOLD_OHLCV["1h"]
    started = time.perf_counter()
    result = offload_table(client, open_catalog(LakeSettings(), root), NAMESPACE, spec, safety_lag_s=LAG_S,
                           max_rows_per_commit=max(1, 8760 * markets // commits))
    offload_s = time.perf_counter() - started
    table = open_catalog(LakeSettings(), root).load_table((NAMESPACE, spec.name))
    client.close()
    return {"markets": markets, "trades": total, "generate_s": round(generate_s, 1),
            "start": start_s, "end": end_s, "candles": result.rows, "commits": result.commits,
            "offload_s": round(offload_s, 1), "data_files": len(list(table.scan().plan_files()))}


def serve(path: str, port: int, boundary_s: int) -> None:
    """The tiered app at / and the warm-only app at /warm, over the warehouse and catalog of ``year``.
    The boundary is pinned at ``boundary_s``: every candle before it is read from the cold tier."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from ticklake.api.app import create_app
    from ticklake.api.tiers import SAFETY_MARGIN, TierBoundary
    from ticklake.lake.cold_reader import ColdReader
    from ticklake.settings import Settings
    from ticklake.warehouse.reader import WarehouseReader

    root = Path(path)
    client = open_client(f"chdb://{root / 'clickhouse'}", "bench")
    reader = WarehouseReader(client)
    settings = Settings(data_dir=root)
    pinned = utc_from_seconds(boundary_s) + timedelta(days=1) + SAFETY_MARGIN
    boundary = TierBoundary(silver_days=1, gold_days=1, gold_1d_days=1, clock=lambda: pinned)
    assert int(boundary.candles("1h").timestamp()) == boundary_s
    cold = ColdReader.from_settings(settings.lake, root)
    reader.ohlcv("binance", "SYM0/USDT", "1h", None, None, 10)  # the first query in a process is slow: warm it
    app = Starlette(routes=[Mount("/warm", app=create_app(reader, settings)),
                            Mount("/", app=create_app(reader, settings, cold=cold, boundary=boundary))])
    print("serving", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def compact(path: str, table: str) -> dict[str, Any]:
    """Maintain one cold table of ``year``'s catalog (as if a week had passed, see maintained_day)."""
    [result] = maintain(open_catalog(LakeSettings(), Path(path)), LakeSettings(), tables=[table],
                        now=time.time() + MAINTENANCE_CLOCK_AHEAD_S)
    return {"table": table, "files_before": result.files_before, "files_after": result.files_after,
            "seconds": round(result.seconds, 2), "error": result.error}


if __name__ == "__main__":
    stage, path = sys.argv[1], sys.argv[2]
    if stage == "offload":
        print(json.dumps(offload(path, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))))
    elif stage == "year":
        print(json.dumps(year(path, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
    elif stage == "serve":
        serve(path, int(sys.argv[3]), int(sys.argv[4]))
    elif stage == "compact":
        print(json.dumps(compact(path, sys.argv[3])))
    else:
        raise SystemExit(f"unknown stage {stage}")
